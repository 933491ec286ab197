"""The offline mini internet: authoritative servers for a root, TLDs and textbook zones on loopback.

`world` says which server serves which zones, `zones/` holds the zone files,
`authority` answers queries from them, and `server` puts everything on sockets.
"""

from __future__ import annotations

from resolver.lab.server import Lab, run

__all__ = ["Lab", "run"]
