"""Runs a `Resolution` over a `Network`: the one copy of the drive loop.

The engine decides, the network carries; this loop only passes results between them
and reads the clock. The daemon, `resolver query`, `resolver trace` and the replay
tests all go through `drive`.
"""

from __future__ import annotations

from collections.abc import Callable

from resolver.engine.events import Outcome, SendQuery
from resolver.engine.network import Network, UpstreamError, UpstreamTimeout
from resolver.engine.resolution import Resolution

Clock = Callable[[], float]


async def drive(resolution: Resolution, network: Network, clock: Clock) -> Outcome:
    """Carry out the resolution's queries until it finishes; return its outcome."""
    action = resolution.next_action()
    while isinstance(action, SendQuery):
        try:
            reply = await network.exchange(
                action.wire, action.server, action.transport, action.timeout_s
            )
        except UpstreamTimeout:
            resolution.on_timeout(action.token, clock())
        except (UpstreamError, OSError) as exc:
            # The engine keeps the error as a value. Its traceback holds this frame, which
            # holds the resolution, which holds the error: a cycle that only a collection
            # frees, and resolutions that wait seconds reach the old generations first.
            resolution.on_error(action.token, exc.with_traceback(None), clock())
        else:
            resolution.on_reply(action.token, reply, clock())
        action = resolution.next_action()
    return action.outcome
