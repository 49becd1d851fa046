"""Configuration precedence (flags > env > file > defaults) and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickgate.config import ConfigError, GatewayConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickgate.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    cfg = load_config(env={})
    assert (cfg.host, cfg.port, cfg.upstream_url, cfg.log_level) == ("127.0.0.1", 8080, None, "INFO")
    assert cfg.embedded_upstream


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'host = "0.0.0.0"\nport = 9000\nlog-level = "debug"\nupstream_token = "from-file"\n'
    )
    env = {"TICKGATE_PORT": "9001", "TICKGATE_UPSTREAM_TOKEN": "from-env"}
    cfg = load_config(path, env=env, overrides={"port": 9002, "host": None})
    assert cfg.port == 9002  # flag
    assert cfg.upstream_token == "from-env"  # env over file
    assert cfg.host == "0.0.0.0"  # file; a flag left unset (None) does not override
    assert cfg.log_level == "DEBUG"
    assert load_config(path, env=env).port == 9001


def test_tickgate_table_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, '[tickgate]\nupstream_url = "wss://api.itick.org/stock"\n')
    assert load_config(path, env={}).upstream_url == "wss://api.itick.org/stock"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prot = 1\n", "unknown key 'prot'"),
        ('port = "eighty"\n', "port has an invalid value"),
        ("port = 70000\n", "port must be 0..65535"),
        ('upstream_auth = "cookie"\n', "upstream_auth must be one of header, query, message"),
        ('upstream_url = "http://x"\n', "ws:// or wss://"),
        ("port = [\n", "tickgate.toml"),
        ("upstream_ping_interval = -1\n", "must not be negative"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(write(tmp_path, text), env={})
    assert needle in str(info.value)


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"TICKGATE_PORT": "x"})
    assert "TICKGATE_PORT" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/tickgate.toml", env={})


def test_config_is_a_value() -> None:
    cfg = GatewayConfig()
    assert cfg.replace(port=1).port == 1
    assert "secret" not in repr(GatewayConfig(upstream_token="secret"))  # tokens stay out of logs


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TICKGATE_UPSTREAM_PING_INTERVAL": "0"}, "upstream_ping_interval must be greater than 0"),
        ({"TICKGATE_UPSTREAM_URL": ""}, "upstream_url is empty"),
    ],
)
def test_config_refuses_zero_timers_and_empty_urls(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(env=env)


def test_a_symbol_map_that_does_not_read_fails_at_load() -> None:
    import pytest

    from tickgate.config import ConfigError, GatewayConfig

    with pytest.raises(ConfigError, match="OURS=THEIRS"):
        GatewayConfig(backup_symbols="700$HK=0700.HK,nonsense")
    assert GatewayConfig(upstream_symbols="700$HK=0700.HK").upstream_symbols == "700$HK=0700.HK"
