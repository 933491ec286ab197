"""The wire vocabulary: names, types, flags, message scanning and the codec.

The only layer that knows the DNS message format (RFC 1035 §4). It imports nothing
else of the resolver and performs no I/O.
"""
