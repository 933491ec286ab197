"""The resolution engine, sans-I/O: what to ask, and what a reply means.

Zone cuts, QNAME minimisation, the reply pipeline (scrub, classify, admit), server
selection, the record cache and the limits. No module here touches a socket, a clock
or randomness of its own; `tests/unit/test_layers.py` keeps it that way.
"""
