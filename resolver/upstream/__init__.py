"""Carrying the engine's queries: UDP, TCP and TLS exchanges, forwarding, entropy.
"""
