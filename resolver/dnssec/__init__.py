"""DNSSEC validation (RFC 4033-4035, RFC 5155, RFC 6840): pure functions over records.

Sits between `dns` and `engine`: it reads `resolver.dns` records and returns typed
verdicts; it fetches nothing, caches nothing and never reads a clock (the time of
validation is passed in as seconds since the epoch).
"""
