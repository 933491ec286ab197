"""`resolver trace` on the command line: options and bad input, without the network."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from resolver.cli.commands import main


@pytest.fixture
def hints(tmp_path: Path) -> Path:
    """A hints file whose only root server sits on an unused loopback address."""
    path = tmp_path / "lab.hints"
    path.write_text(". 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A 127.41.0.4\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["trace", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["www..example.com"], "Error: Invalid value for NAME: 'www..example.com' is not a valid "
                           "domain name"),
    (["www.example.com", "NOSUCHTYPE"], "Error: Invalid value for TYPE: unknown record type "
                                        "'NOSUCHTYPE'"),
    (["www.exa_mple.cöm"], "Error: Invalid value for NAME: 'www.exa_mple.cöm' is not a valid "
                           "internationalised domain name (Codepoint U+005F at position 4 of "
                           "'exa_mple' not allowed)"),
])
def test_trace_cli_bad_question_is_one_line_and_exit_one(args: list[str], message: str) -> None:
    """An invalid name or unknown type: one line on stderr, exit 1, nothing sent."""
    code, out, err = run(*args, "--root-hints", "/nonexistent/lab.hints")
    assert code == 1
    assert err.strip() == message
    assert out == ""


def test_trace_cli_missing_hints_file_is_one_line(tmp_path: Path) -> None:
    """A root hints file that does not exist: one line naming it, exit 1."""
    missing = tmp_path / "nope.hints"
    code, out, err = run("www.networkutopia.com", "--root-hints", str(missing))
    assert code == 1
    assert err.strip() == f"Error: cannot read root hints {missing}: No such file or directory"
    assert out == ""


def test_trace_cli_hints_without_addresses_is_one_line(tmp_path: Path) -> None:
    """A hints file that names no server address is refused in one line."""
    empty = tmp_path / "empty.hints"
    empty.write_text(". 3600000 NS a.root-servers.net.\n")
    code, _, err = run("www.networkutopia.com", "--root-hints", str(empty))
    assert code == 1
    assert err.strip() == f"Error: root hints {empty} name no server with an address"


@pytest.mark.parametrize("server", ["resolver.example", "127.0.0.1@99999", "127.0.0.1@"])
def test_trace_cli_bad_recursive_server_is_one_line(hints: Path, server: str) -> None:
    """--recursive needs an IP address and a port in range; checked before anything is sent."""
    code, out, err = run("www.networkutopia.com", "--root-hints", str(hints),
                         "--recursive", server)
    assert code == 1
    assert err.startswith("Error: --recursive: ")
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_trace_cli_help_lists_every_option() -> None:
    """`resolver trace --help` documents all the options of the issue."""
    result = CliRunner().invoke(main, ["trace", "--help"])
    assert result.exit_code == 0
    for option in ("--json", "--root-hints", "--upstream-port", "--tcp", "--no-color",
                   "--explain", "--recursive", "--fanout", "--no-qmin", "--server", "--seed",
                   "--svg", "--html", "--legend"):
        assert option in result.output


def test_trace_cli_unknown_root_server_names_the_ones_there_are(hints: Path) -> None:
    code, out, err = run("www.networkutopia.com", "--root-hints", str(hints),
                         "--server", "z.root-servers.net")
    assert code == 1 and out == ""
    assert err.strip() == ("Error: --server: 'z.root-servers.net' is not a root server of the "
                           "hints (they name a.root-servers.net.)")


def test_trace_cli_reads_names_and_types_as_dig_does() -> None:
    from resolver.cli.commands import _questions
    from resolver.dns.wire import RRType

    questions = _questions(("www.a.example", "MX", "www.b.example", "c.example", "AAAA"))
    assert [(q.name, q.rtype) for q in questions] == [
        ("www.a.example.", RRType.MX), ("www.b.example.", RRType.A),
        ("c.example.", RRType.AAAA)]
