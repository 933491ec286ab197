"""The TOML configuration file: every key checked with errors that name it, command-line
options over the file, `resolver check-config`, and what a reload may change."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from resolver.cli.commands import _serve_config, main, serve
from resolver.daemon import config_file
from resolver.daemon.config import ServeConfig
from resolver.daemon.config_file import ConfigFileError, needs_restart
from resolver.engine.cache_budget import CacheSize

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resolver.toml"
HINTS = ". 3600000 NS a.root.lab.\na.root.lab. 3600000 A 127.1.0.1\n"


def write(tmp_path: Path, text: str, name: str = "resolver.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as failure:
        config_file.load(write(tmp_path, text))
    return failure.value.errors


def serve_config(args: list[str]) -> ServeConfig:
    """What `resolver serve ARGS` would run with (the options parsed, nothing started)."""
    with serve.make_context("serve", args) as ctx:
        return _serve_config(ctx.params)


def test_config_file_values_become_serve_parameters(tmp_path: Path) -> None:
    """Keys map to `resolver serve` parameters; a single string stands for a one-item list."""
    values = config_file.load(write(tmp_path, """
        interface = ["127.0.0.1:5300", "[::1]:5300"]
        cache-size = 5000
        access-control = "10.0.0.0/8 allow"
        log-queries = true
        ip-ratelimit = 50
        username = "root"
    """))
    assert values == {"listen": ("127.0.0.1:5300", "[::1]:5300"),
                      "cache_size": CacheSize(entries=5000),
                      "access_control": ("10.0.0.0/8 allow",), "log_queries": True,
                      "ip_ratelimit": 50, "user": "root"}


def test_config_file_relative_paths_are_taken_from_the_file_directory(tmp_path: Path) -> None:
    """root-hints and hosts-file written relative mean 'next to the config file'."""
    values = config_file.load(write(tmp_path, 'root-hints = "root.hints"\n'
                                              'hosts-file = ["hosts", "/etc/hosts"]\n'))
    assert values["root_hints"] == str(tmp_path / "root.hints")
    assert values["hosts_file"] == (str(tmp_path / "hosts"), "/etc/hosts")


def test_config_file_unknown_key_names_the_nearest_one(tmp_path: Path) -> None:
    """A misspelt key is an error that suggests the right name."""
    (error,) = errors_of(tmp_path, "cache_size = 10\n")
    assert error == f"{tmp_path / 'resolver.toml'}: unknown key 'cache_size' (did you mean " \
                    "'cache-size'?)"


@pytest.mark.parametrize(("text", "expected"), [
    ('upstream-port = "53"', "'upstream-port' must be an integer, not a string"),
    ("upstream-port = 70000", "'upstream-port' must be from 1 to 65535, not 70000"),
    ("log-queries = 1", "'log-queries' must be true or false, not an integer"),
    ("cache-size = 1.5", "'cache-size' must be a number of entries or a size such as \"64m\", "
                         "not a number with a fraction"),
    ('cache-size = "64q"', "'cache-size' must be a number of entries or a size such as 512k, "
                           "64m or 1g, not '64q'"),
    ("access-control = [1]", "'access-control': item 1 must be a string, not an integer"),
    ("interface = {a = 1}", "'interface' must be a list of strings, not a table"),
    ('interface = ["127.0.0.300:53"]', "'interface': item 1: '127.0.0.300' in "
                                       "'127.0.0.300:53' is not an IP address"),
    ('metrics = "localhost:9153"', "'metrics': 'localhost' in 'localhost:9153' is not an IP "
                                   "address"),
    ('access-control = ["10.0.0.0/8 permit"]', "'access-control': item 1: unknown action "
                                               "'permit'"),
    ('local-zone = ["ads.example. block"]', "'local-zone': item 1: unknown local-zone type"),
    ('local-data = ["www.example. A 192.0.2.300"]', "'local-data': item 1: cannot read "
                                                    "local-data"),
    ('private-address = ["192.168.1.0/16"]', "'private-address': item 1: '192.168.1.0/16' has "
                                             "host bits set"),
    ('username = "no-such-user-here"', "'username': there is no user 'no-such-user-here'"),
])
def test_config_file_bad_values_name_the_key_and_the_fault(tmp_path: Path, text: str,
                                                            expected: str) -> None:
    """Each kind of mistake is one line naming the file, the key and what is wrong."""
    (error,) = errors_of(tmp_path, text + "\n")
    assert error.startswith(f"{tmp_path / 'resolver.toml'}: ")
    assert expected in error
    assert "\n" not in error


def test_config_file_reports_every_error_at_once(tmp_path: Path) -> None:
    """Three faults, three lines: the operator fixes them in one go."""
    errors = errors_of(tmp_path, 'bogus = 1\nverbose = "yes"\ninterface = ["nowhere"]\n')
    assert len(errors) == 3


def test_config_file_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    """A TOML syntax error gives its line; a missing file says it cannot be read."""
    (syntax,) = errors_of(tmp_path, "cache-size = \n")
    assert "not valid TOML" in syntax and "line 1" in syntax
    with pytest.raises(ConfigFileError, match="cannot read it"):
        config_file.load(tmp_path / "missing.toml")


def test_config_file_covers_every_serve_option() -> None:
    """Every `resolver serve` option can be set in the file, and every key sets one."""
    params = {p.name for p in serve.params} - {"config_path"}
    mapped = {option.param for option in config_file.OPTIONS.values()}
    assert mapped == params


def test_config_file_example_documents_every_key_and_loads() -> None:
    """examples/resolver.toml mentions every key and is a valid file as it stands."""
    text = EXAMPLE.read_text()
    for key in config_file.OPTIONS:
        assert re.search(rf"^#?\s*{re.escape(key)} =", text, re.MULTILINE), key
    config_file.load(EXAMPLE)


# -- the command line over the file ------------------------------------------------------


def test_config_file_command_line_overrides_the_file(tmp_path: Path) -> None:
    """Options given on the command line win over the file; the rest come from it."""
    path = write(tmp_path, 'interface = ["127.0.0.1:5300"]\ncache-size = 7\n'
                           'access-control = ["10.0.0.0/8 allow"]\nlog-queries = false\n')
    config = serve_config(["--config", str(path), "--listen", "127.0.0.1:5301",
                           "--log-queries"])
    assert [str(a) for a in config.listen] == ["127.0.0.1:5301"]
    assert config.cache.max_entries == 7
    assert config.system.access_control == ("10.0.0.0/8 allow",)
    assert config.system.log_queries is True
    assert config.system.config_file == str(path)


def test_cache_size_with_a_unit_is_bytes_and_a_plain_number_entries(tmp_path: Path) -> None:
    """`cache-size = "64m"` bounds the caches in bytes; a plain number keeps counting entries
    (resolver.engine.cache_budget); the command line takes the same forms."""
    in_bytes = serve_config(["--config", str(write(tmp_path, 'cache-size = "64m"\n'))])
    assert in_bytes.cache.max_bytes == 64 * 1024 * 1024
    assert serve_config(["--cache-size", "512k"]).cache.max_bytes == 512 * 1024
    in_entries = serve_config(["--cache-size", "5000"]).cache
    assert (in_entries.max_entries, in_entries.max_bytes) == (5000, None)


def test_cache_size_default_is_a_byte_budget() -> None:
    assert serve_config([]).cache.max_bytes == 256 * 1024 * 1024


def test_config_file_ttl_clamps_are_keys_and_options(tmp_path: Path) -> None:
    """cache-max-ttl, cache-min-ttl and their negative twins (Unbound's names) reach the
    cache settings from the file and from the command line."""
    path = write(tmp_path, "cache-max-ttl = 600\ncache-min-ttl = 30\n"
                           "cache-max-negative-ttl = 120\ncache-min-negative-ttl = 5\n")
    cache = serve_config(["--config", str(path)]).cache
    assert (cache.max_ttl_s, cache.min_ttl_s) == (600, 30)
    assert (cache.max_negative_ttl_s, cache.min_negative_ttl_s) == (120, 5)
    cache = serve_config(["--cache-max-ttl", "900", "--cache-min-negative-ttl", "7"]).cache
    assert (cache.max_ttl_s, cache.min_negative_ttl_s) == (900, 7)
    assert errors_of(tmp_path, "cache-max-ttl = 0\n")


def test_config_file_takes_unbounds_serve_expired_names_for_serve_stale(tmp_path: Path) -> None:
    """serve-expired, serve-expired-reply-ttl, serve-expired-ttl and
    serve-expired-client-timeout (Unbound's names) set the serve-stale settings, in the file
    and on the command line."""
    path = write(tmp_path, "serve-expired = true\nserve-expired-reply-ttl = 7\n"
                           "serve-expired-ttl = 3600\nserve-expired-client-timeout = 0\n")
    cache = serve_config(["--config", str(path)]).cache
    assert cache.stale_answer_enable is True
    assert (cache.stale_answer_ttl_s, cache.max_stale_ttl_s) == (7, 3600)
    assert cache.stale_answer_client_timeout_ms == 0
    cache = serve_config(["--serve-expired", "--serve-expired-reply-ttl", "9"]).cache
    assert (cache.stale_answer_enable, cache.stale_answer_ttl_s) == (True, 9)


def test_config_file_one_setting_under_two_names_is_an_error(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "stale-answer-ttl = 30\nserve-expired-reply-ttl = 7\n")
    assert errors == [f"{tmp_path / 'resolver.toml'}: 'stale-answer-ttl' and "
                      "'serve-expired-reply-ttl' are two names of one setting: keep one"]


def test_config_file_without_file_uses_command_line_and_defaults() -> None:
    """No --config: the system settings come from the options and their defaults."""
    config = serve_config(["--access-control", "192.0.2.0/24 deny", "--ip-ratelimit", "9",
                           "--metrics", "127.0.0.1:9999", "--private-address", "10.0.0.0/8"])
    system = config.system
    assert system.access_control == ("192.0.2.0/24 deny",) and system.ip_ratelimit == 9
    assert system.metrics == "127.0.0.1:9999" and system.private_addresses == ("10.0.0.0/8",)
    assert system.config_file is None and system.username is None


def test_config_file_bad_command_line_value_is_a_usage_error() -> None:
    """A bad --access-control stops `resolver serve` with one line naming the option."""
    result = CliRunner().invoke(main, ["serve", "--access-control", "10.0.0.0/8 maybe"])
    assert result.exit_code == 2
    assert "--access-control" in result.output and "unknown action 'maybe'" in result.output


def test_config_file_serve_with_a_bad_file_exits_1_with_each_error(tmp_path: Path) -> None:
    """`resolver serve --config` with a bad file prints one line per error and exits 1."""
    path = write(tmp_path, "bogus = 1\nupstream-port = 0\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 2 and "'bogus'" in lines[0] and "'upstream-port'" in lines[1]


# -- resolver check-config ---------------------------------------------------------------


def test_config_file_check_config_prints_ok_and_a_summary(tmp_path: Path) -> None:
    """A good file: "ok", then one line per subject, exit 0."""
    (tmp_path / "root.hints").write_text(HINTS)
    (tmp_path / "hosts").write_text("192.168.1.9 nas.lan\n")
    path = write(tmp_path, """
        interface = ["127.0.0.1:5300"]
        root-hints = "root.hints"
        access-control = ["10.0.0.0/8 allow"]
        local-zone = ["ads.example. always_nxdomain"]
        local-data = ["printer.lan. A 192.168.1.20"]
        hosts-file = "hosts"
        private-address = ["192.168.0.0/16"]
        private-domain = ["lan."]
        metrics = "127.0.0.1:9153"
    """)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ok"
    text = result.output
    assert "listen:          127.0.0.1:5300 (UDP and TCP)" in text
    assert "rules: 10.0.0.0/8 allow" in text
    assert "ads.example. always_nxdomain" in text
    assert "metrics:         http://127.0.0.1:9153/metrics" in text
    assert "192.168.0.0/16 removed from answers, except for lan." in text


def test_config_file_check_config_reports_errors_and_exits_1(tmp_path: Path) -> None:
    """A bad file: its errors, exit 1, no "ok"."""
    path = write(tmp_path, 'cache-sise = 10\nmetrics = "nowhere"\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 1
    assert "ok" not in result.output.splitlines()
    assert "did you mean 'cache-size'?" in result.output and "'metrics'" in result.output


def test_config_file_check_config_checks_the_named_files(tmp_path: Path) -> None:
    """Missing root hints or hosts files are errors found by check-config, not at runtime."""
    path = write(tmp_path, 'root-hints = "nope.hints"\nhosts-file = "nope-hosts"\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 1
    assert "nope.hints" in result.output and "cannot read hosts file" in result.output


def test_config_file_check_config_runs_the_forwarding_checks(tmp_path: Path) -> None:
    """Options checked by their own feature (forward zones) report through check-config too."""
    (tmp_path / "root.hints").write_text(HINTS)
    path = write(tmp_path, 'root-hints = "root.hints"\nforward-zone = ["example.com"]\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 1 and "Error:" in result.output


# -- reload ------------------------------------------------------------------------------


def test_config_file_needs_restart_names_only_what_a_reload_cannot_change() -> None:
    """Policy changes apply on SIGHUP; listen addresses, cache size and metrics need a restart."""
    old = serve_config([])
    new_policy = serve_config(["--access-control", "10.0.0.0/8 allow", "--log-queries",
                               "--local-data", "x.example. A 192.0.2.1", "--ip-ratelimit", "5"])
    assert needs_restart(old, new_policy) == []
    changed: dict[str, Any] = {"listen": serve_config(["--listen", "127.0.0.1:5353"]).listen,
                               "cache": replace(old.cache, max_entries=3)}
    moved = replace(old, **changed, system=replace(old.system, metrics="127.0.0.1:9153"))
    assert needs_restart(old, moved) == ["listen", "cache", "metrics"]


def test_listen_without_a_port_says_it_means_53(capsys: pytest.CaptureFixture[str]) -> None:
    config = serve_config(["--listen", "127.0.0.1", "--listen", "[::1]:5300"])
    assert [str(a) for a in config.listen] == ["127.0.0.1:53", "[::1]:5300"]
    err = capsys.readouterr().err
    assert ("note: listen address 127.0.0.1 names no port: it means 127.0.0.1:53 (give "
            "ADDR:PORT for another port)") in err
    assert "5300" not in err
