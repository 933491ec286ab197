"""Answering clients: listener, handler, answer cache, batched fast path and client policy.
"""
