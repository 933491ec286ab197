"""The local control channel: a private Unix socket, one JSON line each way.

The server side is exercised on a real socket in a private temporary directory; the
resolver behind it is the in-memory lab with a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from resolver.cli.commands import main
from resolver.daemon.control import ControlError, ControlServer, default_socket_path, request
from resolver.dns.wire import Question, RRType
from resolver.server.handler import QueryHandler
from resolver.service.resolver_service import ResolverService
from tests.support.labnet import FakeClock, LabNetwork, lab_service

WWW = Question("www.networkutopia.com.", RRType.A)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (Unix socket paths are limited to 108 octets)."""
    path = Path(tempfile.mkdtemp(prefix="rctl-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def warm_service() -> ResolverService:
    clock = FakeClock()
    service = lab_service(clock, LabNetwork(clock))
    asyncio.run(service.resolve(WWW))
    return service


def respond(server: ControlServer, payload: Any) -> dict[str, Any]:
    return server.respond(json.dumps(payload).encode())


def run_with_server(path: Path, service: ResolverService, *payloads: dict[str, Any]
                    ) -> list[dict[str, Any] | str]:
    """Start a control server on `path`, send each payload with the real client, stop."""

    async def main() -> list[dict[str, Any] | str]:
        server = ControlServer(path, service, QueryHandler(service))
        await server.start()
        replies: list[dict[str, Any] | str] = []
        try:
            for payload in payloads:
                try:
                    replies.append(await asyncio.to_thread(request, path, payload))
                except ControlError as exc:
                    replies.append(str(exc))
        finally:
            await server.stop()
        return replies

    return asyncio.run(main())


def test_control_default_path_prefers_xdg_runtime_dir() -> None:
    """$XDG_RUNTIME_DIR/resolver/control.sock when set, whoever runs it."""
    path = default_socket_path(environ={"XDG_RUNTIME_DIR": "/run/user/1000"}, uid=1000)
    assert path == Path("/run/user/1000/resolver/control.sock")


def test_control_default_path_for_root_and_for_users() -> None:
    """/run/resolver for root, /tmp/resolver-$UID for others (a relative XDG dir is ignored)."""
    assert default_socket_path(environ={}, uid=0) == Path("/run/resolver/control.sock")
    assert default_socket_path(environ={"XDG_RUNTIME_DIR": "rel"}, uid=1000) == Path(
        "/tmp/resolver-1000/control.sock"
    )


def test_control_show_lists_one_name_with_counted_down_ttl() -> None:
    """show NAME gives the cached records of that name only."""
    server = ControlServer(Path("unused"), warm_service())
    reply = respond(server, {"cmd": "show", "name": "WWW.networkutopia.com"})
    assert reply["ok"] is True
    assert [line.split("\t")[:4] for line in reply["lines"]] == [
        ["www.networkutopia.com.", "3600", "IN", "A"]
    ]


def test_control_show_filters_by_type() -> None:
    """show NAME --type T lists only that type."""
    server = ControlServer(Path("unused"), warm_service())
    assert respond(server, {"cmd": "show", "name": "com.", "type": "NS"})["lines"]
    assert respond(server, {"cmd": "show", "name": "com.", "type": "MX"})["lines"] == []


def test_control_flush_removes_a_subtree() -> None:
    """flush NAME --subtree removes the name and everything below it."""
    service = warm_service()
    server = ControlServer(Path("unused"), service)
    reply = respond(server, {"cmd": "flush", "name": "networkutopia.com", "subtree": True})
    assert reply["ok"] is True and reply["removed"] >= 3  # NS, dns1 A, www A
    assert service.state.cache.rrset(WWW.name, RRType.A) is None
    assert service.state.cache.rrset("com.", RRType.NS) is not None


def test_control_flush_by_type_keeps_other_types() -> None:
    """flush NAME --type T leaves the name's other types."""
    service = warm_service()
    server = ControlServer(Path("unused"), service)
    assert respond(server, {"cmd": "flush", "name": WWW.name, "type": "AAAA"})["removed"] == 0
    assert respond(server, {"cmd": "flush", "name": WWW.name, "type": "A"})["removed"] == 1


def test_control_dump_lists_every_entry_in_the_cache_file_format() -> None:
    """dump lists the root, com, networkutopia.com and www entries, as a cache file."""
    server = ControlServer(Path("unused"), warm_service())
    reply = asyncio.run(server.respond_async(json.dumps({"cmd": "dump"}).encode()))
    owners = {line.split("\t")[0] for line in reply["lines"]}
    assert {".", "com.", "networkutopia.com.", "www.networkutopia.com."} <= owners
    assert reply["lines"][0].startswith(";resolver-cache 1 written=")
    assert reply["lines"][-1].startswith(";end entries=")


def test_control_load_puts_a_dump_into_another_server(tmp_path: Path) -> None:
    """load reads a dump by its absolute path into a cold cache; a relative path or a bad
    file is an error reply that changes nothing."""
    dump = asyncio.run(ControlServer(Path("unused"), warm_service()).respond_async(
        json.dumps({"cmd": "dump"}).encode()))
    path = tmp_path / "dump.txt"
    path.write_text("\n".join(dump["lines"]) + "\n")
    clock = FakeClock()
    cold = lab_service(clock, LabNetwork(clock))
    server = ControlServer(Path("unused"), cold)

    def load(payload: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run(server.respond_async(json.dumps(payload).encode()))

    relative = load({"cmd": "load", "path": "dump.txt"})
    assert relative["ok"] is False and "absolute path" in relative["error"]
    (tmp_path / "bad.txt").write_text("not a cache\n")
    bad = load({"cmd": "load", "path": str(tmp_path / "bad.txt")})
    assert bad["ok"] is False and "not a resolver cache file" in bad["error"]
    assert len(cold.state.cache) == 0
    reply = load({"cmd": "load", "path": str(path)})
    assert reply["ok"] is True and reply["loaded"] > 3
    assert cold.state.cache.rrset(WWW.name, WWW.rtype) is not None


def test_control_stats_counts_cache_and_resolutions() -> None:
    """stats gives cache size, hits, misses, resolutions and upstream queries."""
    service = warm_service()
    asyncio.run(service.resolve(WWW))  # a hit
    stats = respond(ControlServer(Path("unused"), service, QueryHandler(service)),
                    {"cmd": "stats"})["stats"]
    assert stats["cache_hits"] == 1 and stats["cache_misses"] == 1
    assert stats["resolutions"] == 2 and stats["upstream_queries"] > 0
    assert stats["cache_entries"] == len(service.state.cache) > 0
    assert stats["queries"] == 0


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"not json\n", "not one line of JSON"),
        (b"[1, 2]\n", "must be a JSON object"),
        (b"\xff\xfe\n", "not one line of JSON"),
        (b'{"cmd": "reboot"}\n', "unknown command"),
        (b'{"cmd": "show"}\n', "a domain name is needed"),
        (b'{"cmd": "show", "name": 5}\n', "a domain name is needed"),
        (b'{"cmd": "show", "name": "a..b"}\n', "not a valid domain name"),
        (b'{"cmd": "show", "name": "\\u00e9t\\u00e9.fr"}\n', "not ASCII"),
        (b'{"cmd": "show", "name": "x.", "type": "BOGUS"}\n', "BOGUS"),
        (b'{"cmd": "show", "name": "x.", "type": 1}\n', "type must be a string"),
        (b'{"cmd": "flush", "name": "x.", "subtree": "yes"}\n', "true or false"),
    ],
)
def test_control_bad_requests_get_an_error_reply(line: bytes, error: str) -> None:
    """Malformed or unknown requests are answered with ok=false and a reason, never raise."""
    reply = ControlServer(Path("unused"), warm_service()).respond(line)
    assert reply["ok"] is False and error in reply["error"]


def test_control_socket_is_private_and_removed_on_stop(short_dir: Path) -> None:
    """The socket is mode 0600 while serving and gone after stop."""
    path = short_dir / "sub" / "control.sock"
    seen: dict[str, int] = {}
    service = warm_service()

    async def main() -> None:
        server = ControlServer(path, service)
        await server.start()
        seen["mode"] = stat.S_IMODE(os.stat(path).st_mode)
        seen["dir"] = stat.S_IMODE(os.stat(path.parent).st_mode)
        await server.stop()

    asyncio.run(main())
    assert seen == {"mode": 0o600, "dir": 0o700}
    assert not path.exists()


def test_control_client_talks_to_the_server(short_dir: Path) -> None:
    """The real client gets show, flush and stats replies over the socket."""
    path = short_dir / "control.sock"
    show, flush, stats = run_with_server(
        path, warm_service(),
        {"cmd": "show", "name": WWW.name}, {"cmd": "flush", "name": WWW.name}, {"cmd": "stats"},
    )
    assert isinstance(show, dict) and len(show["lines"]) == 1
    assert isinstance(flush, dict) and flush["removed"] == 1
    assert isinstance(stats, dict) and stats["stats"]["resolutions"] == 1


def test_control_client_reports_server_errors_as_one_line(short_dir: Path) -> None:
    """An error reply becomes a ControlError with the server's reason."""
    (reply,) = run_with_server(short_dir / "c.sock", warm_service(), {"cmd": "reboot"})
    assert isinstance(reply, str) and "unknown command" in reply


def test_control_client_without_server_says_none_is_running(short_dir: Path) -> None:
    """No socket file: one clear sentence naming the path."""
    with pytest.raises(ControlError, match="no resolver is running with control socket"):
        request(short_dir / "control.sock", {"cmd": "stats"})


def test_control_server_replaces_a_dead_socket(short_dir: Path) -> None:
    """A socket file left by a crashed server is removed and the new server starts."""
    path = short_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    (reply,) = run_with_server(path, warm_service(), {"cmd": "stats"})
    assert isinstance(reply, dict) and reply["ok"] is True


def test_control_server_refuses_a_socket_in_use(short_dir: Path) -> None:
    """A second server on the same path refuses to start; the first keeps working."""
    path = short_dir / "control.sock"
    service = warm_service()

    async def main() -> str:
        first = ControlServer(path, service)
        await first.start()
        try:
            second = ControlServer(path, service)
            try:
                await second.start()
            except ControlError as exc:
                return str(exc)
            return "started"
        finally:
            await first.stop()

    assert "already listens" in asyncio.run(main())


def test_control_server_refuses_a_directory_others_can_write(short_dir: Path) -> None:
    """A directory writable by other users (and not sticky) could let them swap the socket."""
    shared = short_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    service = warm_service()

    async def main() -> None:
        await ControlServer(shared / "control.sock", service).start()

    with pytest.raises(ControlError, match="writable by other users"):
        asyncio.run(main())


def test_control_server_answers_after_an_oversized_request(short_dir: Path) -> None:
    """A request longer than the limit gets an error; the next client is served."""
    path = short_dir / "control.sock"
    service = warm_service()

    async def main() -> tuple[bytes, dict[str, Any]]:
        server = ControlServer(path, service)
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b"x" * 10_000 + b"\n")
            await writer.drain()
            first = await reader.readline()
            writer.close()
            second = await asyncio.to_thread(request, path, {"cmd": "stats"})
        finally:
            await server.stop()
        return first, second

    first, second = asyncio.run(main())
    assert b"request longer than" in first and second["ok"] is True


def test_control_cli_without_server_prints_one_line_and_exits_1(short_dir: Path) -> None:
    """`resolver cache show NAME` with nothing running: exit 1 and a single clear line."""
    result = CliRunner().invoke(
        main, ["cache", "show", "www.example.com", "--control-socket", str(short_dir / "x.sock")]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no resolver is running" in lines[0]


def test_control_cli_rejects_a_bad_name_before_connecting(short_dir: Path) -> None:
    """A malformed NAME is a usage error (exit 2), not a trip to the server."""
    result = CliRunner().invoke(
        main, ["cache", "flush", "a..b", "--control-socket", str(short_dir / "x.sock")]
    )
    assert result.exit_code == 2 and "not a valid domain name" in result.output


# --- several workers, one control socket each ---------------------------------------------------


def test_control_request_all_asks_every_worker_and_skips_a_dead_one(short_dir: Path) -> None:
    """Worker 0 on the path, worker 2 on path.2, a dead socket file on path.1: two replies,
    numbered by worker; nothing is asked past the first missing number."""
    from resolver.daemon.control import request_all, worker_socket_path

    path = short_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(worker_socket_path(path, 1)))
    dead.close()  # the file stays, nobody listens: a worker that crashed

    first = ControlServer(path, warm_service())
    third = ControlServer(worker_socket_path(path, 2), warm_service())

    async def body() -> list[tuple[int, dict[str, Any]]]:
        await first.start()
        await third.start()
        try:
            return await asyncio.to_thread(
                request_all, path, {"cmd": "flush", "name": "networkutopia.com.",
                                    "subtree": True})
        finally:
            await first.stop()
            await third.stop()

    replies = asyncio.run(body())
    assert [worker for worker, _ in replies] == [0, 2]
    assert all(reply["removed"] >= 1 for _, reply in replies)


def test_control_merged_stats_sum_counters_and_rcodes() -> None:
    """Two workers' counters read as one server's."""
    from resolver.daemon.control import merged_stats

    merged = merged_stats([
        {"queries": 3, "rcodes": {"NOERROR": 2, "NXDOMAIN": 1}, "cache_entries": 10},
        {"queries": 4, "rcodes": {"NOERROR": 4}, "cache_entries": 5},
    ])
    assert merged == {"queries": 7, "rcodes": {"NOERROR": 6, "NXDOMAIN": 1}, "cache_entries": 15}


def test_control_cli_flush_reaches_every_worker(short_dir: Path) -> None:
    """`resolver cache flush` with two workers removes the name from both and says so."""
    from resolver.daemon.control import worker_socket_path

    path = short_dir / "control.sock"
    services = [warm_service(), warm_service()]

    async def body() -> tuple[str, str]:
        servers = [ControlServer(worker_socket_path(path, i), s) for i, s in enumerate(services)]
        for server in servers:
            await server.start()
        try:
            runner = CliRunner()
            show = await asyncio.to_thread(runner.invoke, main, [
                "cache", "show", "www.networkutopia.com", "--control-socket", str(path)])
            flush = await asyncio.to_thread(runner.invoke, main, [
                "cache", "flush", "www.networkutopia.com", "--control-socket", str(path)])
            return show.output, flush.output
        finally:
            for server in servers:
                await server.stop()

    shown, flushed = asyncio.run(body())
    assert ";; worker 0" in shown and ";; worker 1" in shown
    assert flushed.strip() == "removed 2 entries from 2 workers"
    assert all(s.state.cache.rrset("www.networkutopia.com.", RRType.A) is None for s in services)
