"""The running process: composition, workers, control channel, metrics and configuration.
"""
