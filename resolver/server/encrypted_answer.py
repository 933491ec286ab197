"""The one handler call of every encrypted listener: failures contained, replies padded.

DoT, DoH and DoQ hand each query here with their `Client` (its `channel` set). A handler
that raises is logged at WARNING and the query gets no reply, as on UDP and TCP; a reply to a
query that asked for padding is padded (resolver.server.padding).
"""

from __future__ import annotations

import logging

from resolver.server.client import Client
from resolver.server.listener import QueryHandler
from resolver.server.padding import padded, query_asks_padding

logger = logging.getLogger(__name__)


class EncryptedAnswer:
    """Turns one query into its reply for an encrypted listener; never raises."""

    def __init__(self, handler: QueryHandler) -> None:
        self._handler = handler
        self.handler_errors = 0  #: handler calls that raised
        self.queries: dict[str, int] = {}  #: queries by way in (dot, doh, doq)

    async def __call__(self, wire: bytes, client: Client) -> bytes | None:
        self.queries[client.via] = self.queries.get(client.via, 0) + 1
        try:
            reply = await self._handler.handle(wire, client)
        except Exception:
            self.handler_errors += 1
            logger.warning("query handler failed for %s over %s; no reply sent", client.ip,
                           client.via, exc_info=True)
            return None
        if reply is not None and query_asks_padding(wire):
            return padded(reply)
        return reply
