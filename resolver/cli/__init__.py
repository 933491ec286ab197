"""The command line: `resolver serve|query|trace|lab|cache|stats|check-config` and trace rendering.
"""
