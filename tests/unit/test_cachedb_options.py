"""`--cachedb` and its companions: the URL read strictly, the settings the server gets, the
config file keys, and a password that never reaches a log line."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.daemon import config_file
from resolver.daemon.cachedb_redis import CacheDbUrl
from resolver.service.cachedb_tier import CacheDbSettings
from tests.unit.test_config_file import errors_of, serve_config, write


def test_url_with_password_tls_and_database_is_read_and_printed_without_the_password() -> None:
    url = CacheDbUrl.parse("rediss://app:p%40ss@10.0.0.5:6380/3")
    assert url == CacheDbUrl(tls=True, host="10.0.0.5", port=6380, db=3, username="app",
                             password="p@ss")
    assert str(url) == "rediss://app:***@10.0.0.5:6380/3"


def test_url_defaults_are_port_6379_and_database_0() -> None:
    url = CacheDbUrl.parse("redis://[::1]")
    assert (url.host, url.port, url.db, url.tls) == ("::1", 6379, 0, False)
    assert str(url) == "redis://[::1]:6379/0"


@pytest.mark.parametrize(("text", "fault"), [
    ("http://127.0.0.1:6379", "redis:// or rediss://"),
    ("redis://", "no host"),
    ("redis://127.0.0.1:99999", "bad port"),
    ("redis://127.0.0.1/abc", "must be a number"),
    ("redis://127.0.0.1/0?ssl_cert_reqs=none", "not read"),
])
def test_bad_urls_are_refused_with_what_is_wrong(text: str, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        CacheDbUrl.parse(text)


def test_serve_options_become_the_tier_settings() -> None:
    config = serve_config(["--cachedb", "redis://127.0.0.1:7000/1", "--cachedb-secret", "t1",
                           "--cachedb-budget", "2.5", "--cachedb-retry", "10"])
    assert config.cachedb == CacheDbSettings(url="redis://127.0.0.1:7000/1", secret="t1",
                                             read_budget_ms=2.5, retry_s=10.0)
    assert serve_config([]).cachedb is None


def test_secret_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESOLVER_CACHEDB_SECRET", "from-env")
    config = serve_config(["--cachedb", "redis://127.0.0.1"])
    assert config.cachedb is not None and config.cachedb.secret == "from-env"


def test_config_file_keys_set_the_cachedb_options(tmp_path: Path) -> None:
    values = config_file.load(write(tmp_path, 'cachedb = "redis://127.0.0.1:6379/0"\n'
                                              'cachedb-secret = "x"\ncachedb-budget = 3\n'
                                              'cachedb-tls-ca-file = "ca.pem"\n'))
    assert values == {"cachedb": "redis://127.0.0.1:6379/0", "cachedb_secret": "x",
                      "cachedb_budget": 3.0, "cachedb_tls_ca_file": str(tmp_path / "ca.pem")}


def test_config_file_bad_cachedb_values_name_the_key(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, 'cachedb = "memcached://x"\ncachedb-budget = 0\n')
    assert len(errors) == 2
    assert any("cachedb" in e and "redis://" in e for e in errors)
    assert any("cachedb-budget" in e and "from 0.1 to 1000" in e for e in errors)
