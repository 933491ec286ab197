"""The local control channel: the operator's view of a running server's cache, and its counters.

A Unix socket that only the local user can reach: mode 0600, in a directory that no one
else may write to (created 0700), and the peer's uid checked again on every connection
(SO_PEERCRED). Default path, first that applies: $XDG_RUNTIME_DIR/resolver/control.sock,
/run/resolver/control.sock for root, /tmp/resolver-$UID/control.sock.

Protocol: the client sends one JSON object on one line; the server answers one JSON
object on one line and closes the connection.

    {"cmd": "show", "name": "www.example.", "type": "A"}   -> {"ok": true, "lines": [...]}
    {"cmd": "flush", "name": "example.", "subtree": true}  -> {"ok": true, "removed": 3}
    {"cmd": "dump"}                                        -> {"ok": true, "lines": [...]}
    {"cmd": "load", "path": "/var/tmp/cache.txt"}         -> {"ok": true, "loaded": 120}
    {"cmd": "stats"}                                       -> {"ok": true, "stats": {...},
                                                                "exposition": "..."}
    anything else                                          -> {"ok": false, "error": "..."}

`type` is optional everywhere. Bad requests get an error reply; nothing a client sends
raises out of the server. `dump` writes and `load` reads the cache file format
(resolver.daemon.cache_file); both do their heavy part off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from resolver.daemon import cache_file
from resolver.dns import names
from resolver.dns.wire import type_from_text
from resolver.dnssec.canonical import canonical_name_wire
from resolver.server.handler import QueryHandler
from resolver.server.metrics import Sample, parse_exposition
from resolver.service.resolver_service import ResolverService

log = logging.getLogger(__name__)

#: Longest request line (a name is at most 255 octets; the rest is a few keys).
MAX_REQUEST_OCTETS = 4096
#: A client must send its request within this time.
REQUEST_TIMEOUT_S = 5.0
#: How long the command-line client waits for a reply (a dump of a full cache takes a while).
CLIENT_TIMEOUT_S = 30.0


class ControlError(Exception):
    """A control-channel problem, in one line an operator understands."""


class ControlNotRunning(ControlError):
    """Nothing listens on the control socket (no file, or a file left by a dead server)."""


def default_socket_path(
    *, environ: Mapping[str, str] | None = None, uid: int | None = None
) -> Path:
    """Where `resolver serve` listens for control commands unless told otherwise."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "resolver" / "control.sock"
    uid = os.getuid() if uid is None else uid
    if uid == 0:
        return Path("/run/resolver/control.sock")
    return Path(f"/tmp/resolver-{uid}/control.sock")


def worker_socket_path(path: Path, index: int) -> Path:
    """The control socket of worker `index` (`resolver serve --workers`); worker 0 keeps `path`."""
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


# -- the server ------------------------------------------------------------------


class ControlServer:
    """Answers control commands for one running resolver on a private Unix socket."""

    def __init__(
        self, path: Path, service: ResolverService, handler: QueryHandler | None = None
    ) -> None:
        self.path = path
        self.service = service
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        """Create the socket; raises ControlError when the path is unsafe or in use."""
        _prepare_directory(self.path.parent)
        await _remove_dead_socket(self.path)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others connect
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_OCTETS
            )
        except OSError as exc:
            raise ControlError(f"cannot create control socket {self.path}: "
                               f"{exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino

    async def stop(self) -> None:
        """Close the socket and remove its file (unless another server has replaced it)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._inode = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _peer_allowed(writer):
                reply: dict[str, Any] = {"ok": False, "error": "permission denied"}
            else:
                try:
                    line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
                except ValueError:  # over the line limit
                    reply = _error(f"request longer than {MAX_REQUEST_OCTETS} octets")
                else:
                    reply = await self.respond_async(line)
            if len(reply.get("lines", ())) > _ENCODE_OFF_LOOP_LINES:
                data = await asyncio.to_thread(_encode, reply)
            else:
                data = _encode(reply)
            writer.write(data)
            await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT_S)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went quiet or away
        except Exception:  # never let one client stop the server
            log.exception("control channel: internal error")
        finally:
            writer.close()

    async def respond_async(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line, `dump` and `load` included."""
        request = _request_object(line)
        if isinstance(request, dict) and request.get("cmd") == "dump":
            return {"ok": True, "lines": await cache_file.dump_lines(self.service.state.cache)}
        if isinstance(request, dict) and request.get("cmd") == "load":
            path = request.get("path")
            if not isinstance(path, str) or not os.path.isabs(path):
                return _error("load needs the absolute path of a cache file")
            cache = self.service.state.cache
            try:
                loaded = await cache_file.load_into(cache, Path(path))
            except cache_file.CacheFileError as exc:
                return _error(f"{path}: {exc}")
            for listener in cache.flush_listeners:  # replies built from the old entries
                listener()
            return {"ok": True, "loaded": loaded}
        reply = self.respond(line)
        if reply.get("ok") and isinstance(request, dict) and request.get("cmd") == "flush":
            reply["shared"] = await self._flush_shared(request)
        return reply

    async def _flush_shared(self, request: dict[str, Any]) -> str:
        """Tell the shared cache (--cachedb) to forget what the flush removed here: "flushed",
        "unavailable" (it could not be told; its entries age out by their TTLs), or "none"."""
        cachedb = self.handler.cachedb if self.handler is not None else None
        if cachedb is None:
            return "none"
        name = _name(request.get("name"))
        done = await cachedb.forget(canonical_name_wire(name),
                                    subtree=request.get("subtree") is True,
                                    rtype=_type(request.get("type")))
        return "flushed" if done else "unavailable"

    def respond(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line (all but `dump` and `load`)."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return _error("the request is not one line of JSON")
        if not isinstance(request, dict):
            return _error("the request must be a JSON object")
        try:
            return self._command(request)
        except ControlError as exc:
            return _error(str(exc))

    def _command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        cache = self.service.state.cache
        if cmd == "show":
            name = _name(request.get("name"))
            lines = list(cache.dump(name=name, rtype=_type(request.get("type"))))
            return {"ok": True, "lines": lines}
        if cmd == "flush":
            name = _name(request.get("name"))
            subtree = request.get("subtree", False)
            if not isinstance(subtree, bool):
                raise ControlError("subtree must be true or false")
            removed = cache.flush(name, subtree=subtree, rtype=_type(request.get("type")))
            return {"ok": True, "removed": removed}
        if cmd == "stats":
            stats: dict[str, Any] = dict(self.service.stats())
            if self.handler is not None:
                stats["queries"] = self.handler.queries
                stats["rcodes"] = dict(self.handler.rcodes)
                # Replies served as bytes never reach the service's hit counter.
                stats["answer_cache_hits"] = self.handler.answers.hits
                stats["answer_cache_entries"] = len(self.handler.answers)
            reply: dict[str, Any] = {"ok": True, "stats": stats}
            if self.handler is not None and self.handler.metrics is not None:
                # The counters as /metrics serves them, so that `resolver stats` prints the
                # same table whichever way it reads them.
                reply["exposition"] = self.handler.metrics.render()
            return reply
        return _error(f"unknown command {cmd!r} (show, flush, dump, load, stats)")


#: A reply with more lines than this is encoded in a thread (a full cache's dump).
_ENCODE_OFF_LOOP_LINES = 1_000


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _request_object(line: bytes) -> object:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ControlError("a domain name is needed")
    return check_name(value)


def check_name(text: str) -> str:
    """The canonical form of a domain name typed by an operator; ControlError if invalid."""
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        raise ControlError(f"{text!r} is not ASCII (use its xn-- form)") from None
    name = names.canonical(text)
    if not names.within_size_limits(name):
        raise ControlError(f"{text!r} is not a valid domain name")
    return name


def _type(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ControlError("type must be a string such as \"A\"")
    try:
        return type_from_text(value)
    except ValueError as exc:
        raise ControlError(str(exc)) from None


def _peer_allowed(writer: asyncio.StreamWriter) -> bool:
    """Only our own user (or root) may talk to us, whatever the file mode says."""
    sock = writer.get_extra_info("socket")
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None:
        return True  # not Linux: the 0600 mode and the private directory still apply
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def _prepare_directory(directory: Path) -> None:
    """Create the socket's directory 0700, or check that no one else can write to it."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise ControlError(f"cannot create {directory}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"{directory} is not a directory")
    if info.st_uid not in (os.getuid(), 0):
        raise ControlError(f"{directory} belongs to another user; choose --control-socket")
    sticky = bool(info.st_mode & stat.S_ISVTX)
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        raise ControlError(f"{directory} is writable by other users; choose --control-socket")


async def _remove_dead_socket(path: Path) -> None:
    """Remove a socket left by a server that died; refuse if one still answers there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlError(f"cannot use {path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(f"{path} exists and is not a socket")
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
    except (OSError, TimeoutError):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    writer.close()
    raise ControlError(f"another resolver already listens on control socket {path}")


# -- the client ------------------------------------------------------------------


def request(path: Path, payload: dict[str, Any], *, timeout_s: float = CLIENT_TIMEOUT_S
            ) -> dict[str, Any]:
    """Send one command to the server at `path`; its reply, or ControlError."""
    not_running = (f"no resolver is running with control socket {path} "
                   f"(start `resolver serve`, or pass the same --control-socket)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise ControlNotRunning(not_running) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (the server runs as another user)"
                               ) from None
        except OSError as exc:
            raise ControlError(f"cannot reach {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = _read_reply(sock)
        except TimeoutError:
            raise ControlError(f"no reply from the resolver on {path} within {timeout_s:g} s"
                               ) from None
        except OSError as exc:
            raise ControlError(f"lost the connection to {path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"unreadable reply from {path}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"unreadable reply from {path}")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "the resolver refused the command"))
    return reply


def request_all(path: Path, payload: dict[str, Any], *, timeout_s: float = CLIENT_TIMEOUT_S
                ) -> list[tuple[int, dict[str, Any]]]:
    """Send one command to the server at `path` and to every further worker of it.

    A server with several workers (`--workers N`) has one control socket per worker
    (`worker_socket_path`), each with its own caches: a flush must reach them all. Worker
    sockets are tried in order until one does not exist; one whose worker is gone (a
    socket file left by a crash) is skipped. Returns (worker number, reply) pairs;
    ControlError if `path` itself does not answer.
    """
    replies = [(0, request(path, payload, timeout_s=timeout_s))]
    index = 1
    while True:
        sibling = worker_socket_path(path, index)
        if not os.path.lexists(sibling):
            return replies
        with contextlib.suppress(ControlNotRunning):  # a socket file left by a dead worker
            replies.append((index, request(sibling, payload, timeout_s=timeout_s)))
        index += 1


def merged_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The counters of several workers as one server's: numbers and per-rcode counts summed."""
    merged: dict[str, Any] = {}
    for one in stats:
        for key, value in one.items():
            if isinstance(value, bool) or key not in merged:
                merged.setdefault(key, value if not isinstance(value, dict) else dict(value))
                continue
            if isinstance(value, int | float) and isinstance(merged[key], int | float):
                merged[key] += value
            elif isinstance(value, dict) and isinstance(merged[key], dict):
                for name, count in value.items():
                    merged[key][name] = merged[key].get(name, 0) + count
    return merged


def merged_samples(expositions: list[str]) -> list[Sample]:
    """The samples of several workers' expositions as one server's: counts summed, the
    start time the earliest, in the order of the first exposition."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    for text in expositions:
        for sample in parse_exposition(text):
            key = (sample.name, sample.labels)
            known = merged.get(key)
            if known is None:
                merged[key] = sample
            elif sample.name.endswith("_start_time_seconds"):
                merged[key] = replace(known, value=min(known.value, sample.value))
            else:
                merged[key] = replace(known, value=known.value + sample.value)
    return list(merged.values())


def _read_reply(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)
