"""Resolution as a service: in-flight sharing, serve-stale and prefetch over the engine.
"""
