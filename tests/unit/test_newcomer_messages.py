"""The messages a newcomer meets first: each names the culprit and what to do, in one line.

Bad root hints, the lab's hints with the wrong port, bad local data, a stub zone's
servers, a configuration file with several problems, internationalised names, --version.
Nothing here sends a query: every check happens before the first one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from resolver import __version__
from resolver.cli.commands import main
from resolver.daemon.hints_file import LAB_PORT_NOTE, load_checked, read_hints, stated_port
from resolver.dns.zone_lines import first_problem, record_problem
from resolver.engine.delegation import RootHintsError
from resolver.engine.settings import ForwardingSettings
from resolver.upstream.forwarding import configured_zones

GOOD_HINTS = ". 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A 127.41.0.4\n"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def lab_hints(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "lab.hints"
    path.write_text(LAB_PORT_NOTE.format(port=port) + "\n" + GOOD_HINTS)
    return path


# -- root hints ------------------------------------------------------------------------


def test_root_hints_that_are_not_a_zone_file_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("; my hints\n. 3600000 NS a.root-servers.net.\nthe root servers are here\n")
    code, out, err = invoke("trace", "www.example.com", "--root-hints", str(path))
    assert code == 1 and out == ""
    assert err.strip() == (
        f"Error: root hints {path} is not a zone file: line 3: 'root' is not a record type "
        "(expected NAME [TTL] [IN] TYPE DATA): 'the root servers are here'"
    )


def test_dev_null_as_root_hints_says_it_is_empty_and_what_to_give() -> None:
    code, _, err = invoke("query", "www.example.com", "--root-hints", "/dev/null")
    assert code == 1
    assert err.strip().startswith("Error: root hints /dev/null is empty (give IANA's root.hints")
    assert "resolver lab --hints-file lab.hints" in err


def test_root_hints_without_root_ns_records_say_so(tmp_path: Path) -> None:
    path = tmp_path / "a-only.hints"
    path.write_text("a.root-servers.net. 3600000 A 127.41.0.4\n")
    with pytest.raises(RootHintsError, match=r"name no root server \(no '\. NS' record"):
        read_hints(path)


def test_a_binary_file_as_root_hints_is_not_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.hints"
    path.write_bytes(b"\x7fELF\xff\xfe\x00\x01")
    with pytest.raises(RootHintsError, match="is not a text file"):
        read_hints(path)


def test_lab_hints_with_the_default_port_say_which_upstream_port_to_use(tmp_path: Path) -> None:
    """A warning, first thing: the command still runs (a lesson may aim at a dead port)."""
    path = lab_hints(tmp_path, 5353)
    for command in ("trace", "query"):
        _, _, err = invoke(command, "www.networkutopia.com", "--root-hints", str(path))
        assert err.splitlines()[0] == (
            f"Warning: root hints {path} come from the lab, whose servers listen on port 5353, "
            "but queries would go to port 53: add --upstream-port 5353"
        ), command


def test_lab_hints_state_the_port_the_lab_wrote() -> None:
    assert stated_port(LAB_PORT_NOTE.format(port=5391) + "\n" + GOOD_HINTS) == 5391
    assert stated_port(GOOD_HINTS) is None


def test_lab_hints_with_their_own_port_give_no_warning(tmp_path: Path) -> None:
    path = lab_hints(tmp_path, 5353)
    assert load_checked(path, 5353)[1] is None
    assert "add --upstream-port 5353" in (load_checked(path, 53)[1] or "")


# -- zone-file lines -------------------------------------------------------------------


@pytest.mark.parametrize(("line", "reason"), [
    ("x.example. A 300.1.2.3", "'300.1.2.3' is not an IPv4 address (the data of an A record)"),
    ("x.example. AAAA 192.0.2.1",
     "'192.0.2.1' is not an IPv6 address (the data of an AAAA record)"),
    ("x.example. 60 IN TXT", "the TXT record has no data"),
    ("x.example. NS a.example. b.example.", "a NS record holds one name, not 2 words"),
    ("x.example. 3600", "no record type (expected NAME [TTL] [IN] TYPE DATA)"),
    ("x.example. MX nowhere", "the MX data 'nowhere' cannot be read"),
])
def test_a_bad_record_line_is_named_by_what_is_wrong(line: str, reason: str) -> None:
    assert record_problem(line) == reason


def test_good_record_lines_comments_and_directives_have_no_problem() -> None:
    text = "$TTL 3600\n; comment\n\n. 3600000 IN NS a.root-servers.net.\nx. MX 10 mail.x.\n"
    assert first_problem(text) is None


# -- local data, stub zones --------------------------------------------------------------


def test_local_data_with_a_bad_address_says_the_address_is_bad() -> None:
    code, _, err = invoke("serve", "--listen", "127.0.0.1:0",
                          "--local-data", "printer.home.arpa. A 192.168.1.300")
    assert code == 2  # click's usage error
    assert ("cannot read local-data 'printer.home.arpa. A 192.168.1.300': '192.168.1.300' is "
            "not an IPv4 address (the data of an A record)") in err


def test_stub_zone_servers_are_named_stub_servers_not_forwarders() -> None:
    settings = ForwardingSettings(stub_zones=("corp.example=127.0.0.9,127.0.0.10",))
    zones = configured_zones(settings, default_port=53)
    names = [server.name for server in zones["corp.example."].servers]
    assert names == ["stub-server-1.", "stub-server-2."]
    assert not zones["corp.example."].recursion_desired


# -- check-config ------------------------------------------------------------------------


def test_check_config_reports_every_problem_of_the_file_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "lab.hints").write_text(LAB_PORT_NOTE.format(port=5353) + "\n" + GOOD_HINTS)
    path = tmp_path / "resolver.toml"
    path.write_text('cache-sise = 10\nroot-hints = "lab.hints"\n'
                    'local-data = ["a.example. A 1.2.3.999"]\nhosts-file = "missing-hosts"\n')
    code, out, err = invoke("check-config", str(path))
    assert code == 1 and "ok" not in out.splitlines()
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert errors[0] == f"Error: {path}: unknown key 'cache-sise' (did you mean 'cache-size'?)"
    assert "'1.2.3.999' is not an IPv4 address" in errors[1]
    assert "cannot read hosts file" in errors[2]
    assert len(errors) == 3
    assert any(line.startswith("warning:") and "set upstream-port = 5353" in line
               for line in err.splitlines())


def test_check_config_warns_that_workers_leave_the_metrics_endpoint_out(tmp_path: Path) -> None:
    (tmp_path / "root.hints").write_text(GOOD_HINTS)
    path = tmp_path / "resolver.toml"
    path.write_text('root-hints = "root.hints"\nworkers = 2\nmetrics = "127.0.0.1:9153"\n'
                    'interface = ["127.0.0.1:0"]\n')
    code, out, err = invoke("check-config", str(path))
    assert code == 0 and out.startswith("ok\n")
    warnings = err.strip().splitlines()
    assert warnings[0].startswith(f"warning: {path}: 'metrics' is not served with 'workers' = 2")
    assert warnings[1].startswith(f"warning: {path}: 'workers' = 2 needs explicit ports")


def test_check_config_says_an_interface_without_a_port_means_53(tmp_path: Path) -> None:
    (tmp_path / "root.hints").write_text(GOOD_HINTS)
    path = tmp_path / "resolver.toml"
    path.write_text('root-hints = "root.hints"\ninterface = ["127.0.0.1", "[::1]:5300"]\n')
    code, out, err = invoke("check-config", str(path))
    assert code == 0
    assert "  listen:          127.0.0.1:53, [::1]:5300 (UDP and TCP)" in out.splitlines()
    assert err.strip() == ("note: listen address 127.0.0.1 names no port: it means "
                           "127.0.0.1:53 (give ADDR:PORT for another port)")


# -- names and versions ------------------------------------------------------------------


def test_an_internationalised_name_is_asked_as_a_labels_and_the_conversion_shown() -> None:
    code, _, err = invoke("trace", "www.exämple.com", "--root-hints", "/dev/null")
    assert code == 1  # the hints stop it; the name was converted first
    assert "note: www.exämple.com is asked as www.xn--exmple-cua.com." in err


@pytest.mark.parametrize("command", ["query", "trace"])
def test_an_invalid_internationalised_name_is_one_line_and_exit_one(command: str) -> None:
    """Exit 1 for bad input, as the README says: 2 is SERVFAIL for both commands."""
    code, _, err = invoke(command, "www.ex_ämple.com", "--root-hints", "/dev/null")
    assert code == 1
    assert err.startswith("Error: Invalid value for NAME: 'www.ex_ämple.com' is not a valid "
                          "internationalised domain name (")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["a..b"], "Error: Invalid value for NAME: 'a..b' is not a valid domain name"),
    (["www.example.com", "BOGUS"], "Error: Invalid value for TYPE: unknown record type 'BOGUS'"),
])
def test_query_with_bad_input_is_one_line_and_exit_one(args: list[str], message: str) -> None:
    code, out, err = invoke("query", *args, "--root-hints", "/dev/null")
    assert (code, out, err.strip()) == (1, "", message)


def test_version_is_on_the_command_group() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.strip() == f"resolver, version {__version__}"
