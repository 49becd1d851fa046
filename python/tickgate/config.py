"""Gateway configuration: defaults < TOML file < environment (``TICKGATE_<NAME>``) < flags.

Every setting has one name used in all three places (``upstream_url`` in the file,
``TICKGATE_UPSTREAM_URL`` in the environment, ``--upstream-url`` on the command line).
Unknown keys in a file are an error naming the key: a typo must not silently fall back to a
default in production.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

__all__ = ["ConfigError", "GatewayConfig", "load_config"]

ENV_PREFIX = "TICKGATE_"
AuthMode = Literal["header", "query", "message"]
ProviderName = Literal["itick", "finnhub", "alpaca"]
UnsubscribeMode = Literal["message", "resend"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
ClientTransport = Literal["uvloop", "aiofastnet"]
ClientAuth = Literal["none", "jwt"]


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    # Listener
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: LogLevel = "INFO"
    # Upstream (iTick). No URL means the embedded simulator on a free loopback port.
    upstream_url: str | None = None
    upstream_token: str | None = field(default=None, repr=False)
    #: The provider's protocol: iTick, or a Finnhub-style trades feed (tick channels only).
    upstream_provider: ProviderName = "itick"
    upstream_auth: AuthMode = "header"
    # How a provider spells symbols it names differently, "OURS=THEIRS,...", e.g.
    # "700$HK=0700.HK,BRK.B$US=BRK-B" (each applied to that provider both ways).
    upstream_symbols: str | None = None
    backup_symbols: str | None = None
    # A backup provider that takes the channels over when the primary has been down for
    # failover_after seconds, and gives them back once the primary has delivered for
    # failback_after seconds (tickgate.upstream.failover). None: no backup.
    backup_provider: ProviderName | None = None
    backup_url: str | None = None
    backup_token: str | None = field(default=None, repr=False)
    failover_after: float = 5.0
    failback_after: float = 30.0
    upstream_unsubscribe: UnsubscribeMode = "message"
    # A frozen provider (TCP open, nothing answering) is found within ping + pong: 10 s.
    upstream_ping_interval: float = 5.0
    upstream_pong_timeout: float = 4.0
    upstream_idle_timeout: float = 60.0
    upstream_data_timeout: float = 300.0
    upstream_connect_timeout: float = 10.0
    upstream_auth_timeout: float = 10.0
    # The provider's symbol limit for one connection (iTick counts symbols; 0: none), and the
    # share of it one client connection may fill with symbols nobody else streams.
    upstream_max_symbols: int = 1000
    # How long the core keeps a symbol's state after nobody holds any of its channels (a client
    # coming straight back keeps its numbering); then memory follows what is subscribed.
    symbol_release_grace: float = 60.0
    upstream_symbols_per_connection: int = 250
    # Provider updates whose event time is further than this before / after their receipt are
    # dropped as implausible (seconds read as milliseconds, a year 5138).
    upstream_max_event_age: float = 3650 * 86400.0
    upstream_max_event_lead: float = 3600.0
    upstream_backoff_initial: float = 0.5
    upstream_backoff_max: float = 30.0
    upstream_subscribe_chunk: int = 200
    # Clients
    #: WebSocket clients one process admits; past it a new client gets HTTP 503. 0 derives it
    #: from the file limit (raised to the hard limit at start), keeping headroom.
    max_connections: int = 0
    #: Initial read buffer per client (grows for larger messages).
    client_read_buffer_bytes: int = 1024
    #: Client socket transport: "uvloop" (about 9 KB per idle client) or "aiofastnet" (about
    #: 16 KB, some 15 % less CPU per delivery). See docs/benchmarks.md.
    client_transport: ClientTransport = "uvloop"
    max_message_bytes: int = 64 * 1024
    #: Channels (subscriptions) one client may hold: past it ``too_many_subscriptions``.
    max_channels_per_connection: int = 500
    #: Hard cap on a client's unsent bytes: past it the client is closed (1013).
    max_send_buffer_bytes: int = 8 * 1024 * 1024
    #: Soft cap: past it a client's updates are conflated until its socket drains.
    slow_consumer_soft_cap_bytes: int = 256 * 1024
    #: A client kept over the soft cap this long is closed (1013).
    slow_consumer_lag_timeout: float = 10.0
    # Browser origins allowed to open a WebSocket, comma-separated ("*": any). A request
    # without an Origin header (not a browser) is not affected. None: any origin.
    allowed_origins: str | None = None
    # When set, /healthz and /metrics need "Authorization: Bearer <ops_token>".
    ops_token: str | None = field(default=None, repr=False)
    # Client authentication (tickgate.auth, docs/security.md). "none" lets anyone connect (the
    # embedded default; a warning says so at start); "jwt" needs a token signed with a key
    # from jwt_keys (a JWKS file, reloaded on change or SIGHUP) or with jwt_secret (HS256).
    auth: ClientAuth = "none"
    jwt_keys: str | None = None
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    #: Clock skew tolerated on exp, nbf and iat (seconds).
    jwt_leeway: float = 30.0
    #: A client that gave no token at the handshake has this long to send an auth message.
    auth_timeout: float = 10.0
    #: After its token expires, a client has this long to send a fresh one (else 4001).
    reauth_grace: float = 60.0
    # WSS: a PEM certificate chain and its key (re-read on SIGHUP for new connections).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: New connections one source address may open per second, in bursts up to the burst
    #: (past it: HTTP 429).
    connection_rate_per_address: float = 20.0
    connection_burst_per_address: int = 200
    #: Networks not counted (comma-separated): sidecars, health checks, local load tests.
    connection_rate_exempt: str | None = "127.0.0.0/8,::1/128"
    #: Symbols (or types) one subscribe/unsubscribe request may name.
    max_symbols_per_request: int = 1000
    #: Audit log (JSON lines, one file per UTC day) in this directory; None: none.
    audit_dir: str | None = None
    audit_keep_days: int = 90
    # Commands per second one connection may send (a token bucket), bursts up to the burst;
    # past it `rate_limited`, and after client_abuse_limit refusals in a row, closed (1008).
    client_command_rate: float = 20.0
    client_command_burst: int = 50
    client_abuse_limit: int = 100
    client_ping_interval: float = 30.0
    client_pong_timeout: float = 15.0
    # Batch mode (per connection: ?mode=batch&interval_ms=N or the set_mode command)
    batch_interval_ms: int = 500
    batch_interval_min_ms: int = 50
    batch_interval_max_ms: int = 60_000
    #: Ticks held per connection while batching or conflating; past it the oldest are dropped.
    batch_tick_cap: int = 1000
    #: Granularity of batch deadlines (the timer wheel's tick).
    batch_timer_resolution_ms: int = 10
    #: The dictionary of tickgate.v1.proto+zstd frames: "builtin", "none" or a file path.
    zstd_dictionary: str = "builtin"
    # Sessions and replay
    #: Redis for sessions (``redis://host:port/db``): resume on another worker or after a
    #: restart. None keeps them in memory (the embedded default).
    redis_url: str | None = None
    #: How long a client's session (subscriptions, mode) outlives its connection, seconds.
    session_ttl: float = 300.0
    #: Sessions of clients that went away kept at most (the oldest go first past it).
    session_max_detached: int = 100_000
    #: How far back the ingest keeps each channel's updates for resume, seconds.
    replay_window: float = 300.0
    #: Total size of what the replay ring holds; past it the oldest updates go first.
    replay_max_bytes: int = 256 * 1024 * 1024
    # Node of workers
    #: Edge worker processes sharing the port (SO_REUSEPORT) beside one ingest process; 0 runs
    #: the ingest and one edge in one process (the embedded default).
    workers: int = 0
    #: Unsent bytes the ingest holds for one edge worker before dropping its bus link (it
    #: re-joins by itself).
    bus_buffer_bytes: int = 16 * 1024 * 1024
    #: How often workers exchange figures for the node-wide /healthz and /metrics (seconds).
    node_view_interval: float = 1.0
    # Embedded simulator (used only when upstream_url is unset)
    # Graceful degradation under overload (tickgate.edge.degrade): the event-loop lag (ms) and
    # share of clients whose sockets back up at which levels 1, 2 and 3 are wanted.
    degrade_level1_lag_ms: float = 200.0
    degrade_level2_lag_ms: float = 500.0
    degrade_level3_lag_ms: float = 2000.0
    degrade_level1_paused_share: float = 0.25
    degrade_level2_paused_share: float = 0.5
    degrade_level3_paused_share: float = 0.9
    degrade_sample_s: float = 0.25
    degrade_enter_s: float = 2.0
    degrade_exit_s: float = 10.0
    degrade_batch_interval_ms: int = 2000
    degrade_snapshot_interval_s: float = 5.0
    simulator_rate: float = 2.0
    simulator_seed: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{f.name} must not be negative (got {value})")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be greater than 0 (got {getattr(self, name)})")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535 (got {self.port})")
        if self.upstream_subscribe_chunk < 1:
            raise ConfigError("upstream_subscribe_chunk must be at least 1")
        if self.upstream_backoff_initial <= 0 or self.upstream_backoff_max < self.upstream_backoff_initial:
            raise ConfigError("need 0 < upstream_backoff_initial <= upstream_backoff_max")
        if not self.batch_interval_min_ms <= self.batch_interval_ms <= self.batch_interval_max_ms:
            raise ConfigError(
                "need batch_interval_min_ms <= batch_interval_ms <= batch_interval_max_ms "
                f"(got {self.batch_interval_min_ms}, {self.batch_interval_ms}, {self.batch_interval_max_ms})"
            )
        for text in (self.upstream_symbols, self.backup_symbols):
            parse_symbol_map(text)  # fail at load, not at the first connect
        if self.backup_provider is not None and not self.backup_url:
            raise ConfigError("backup_provider needs backup_url")
        if not self.batch_interval_min_ms <= self.degrade_batch_interval_ms <= self.batch_interval_max_ms:
            raise ConfigError("degrade_batch_interval_ms must be within the batch interval limits")
        lags = (self.degrade_level1_lag_ms, self.degrade_level2_lag_ms, self.degrade_level3_lag_ms)
        shares = (
            self.degrade_level1_paused_share,
            self.degrade_level2_paused_share,
            self.degrade_level3_paused_share,
        )
        if list(lags) != sorted(lags) or list(shares) != sorted(shares):
            raise ConfigError("degradation thresholds must rise from level 1 to level 3")
        if self.slow_consumer_soft_cap_bytes >= self.max_send_buffer_bytes:
            raise ConfigError("slow_consumer_soft_cap_bytes must be below max_send_buffer_bytes")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"redis_url must be a redis://, rediss:// or unix:// URL (got {self.redis_url!r})"
            )
        if self.auth == "jwt" and (self.jwt_keys is None) == (self.jwt_secret is None):
            raise ConfigError("auth = jwt needs exactly one of jwt_keys (a JWKS file) or jwt_secret")
        for net in (self.connection_rate_exempt or "").split(","):
            try:
                if net.strip():
                    ipaddress.ip_network(net.strip(), strict=False)
            except ValueError:
                raise ConfigError(f"connection_rate_exempt: {net.strip()!r} is not a network") from None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key go together")
        if self.upstream_url is not None and not self.upstream_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"upstream_url must be a ws:// or wss:// URL (got {self.upstream_url!r})")

    @property
    def embedded_upstream(self) -> bool:
        return self.upstream_url is None

    def replace(self, **changes: Any) -> GatewayConfig:
        return dataclasses.replace(self, **changes)


_POSITIVE = (
    "client_read_buffer_bytes",
    "upstream_ping_interval",
    "upstream_pong_timeout",
    "upstream_idle_timeout",
    "upstream_connect_timeout",
    "upstream_auth_timeout",
    "upstream_symbols_per_connection",
    "degrade_sample_s",
    "degrade_snapshot_interval_s",
    "upstream_max_event_age",
    "upstream_max_event_lead",
    "max_message_bytes",
    "max_channels_per_connection",
    "max_send_buffer_bytes",
    "client_ping_interval",
    "client_command_rate",
    "client_command_burst",
    "client_abuse_limit",
    "client_pong_timeout",
    "auth_timeout",
    "reauth_grace",
    "connection_rate_per_address",
    "connection_burst_per_address",
    "max_symbols_per_request",
    "audit_keep_days",
    "slow_consumer_soft_cap_bytes",
    "slow_consumer_lag_timeout",
    "batch_interval_min_ms",
    "batch_tick_cap",
    "batch_timer_resolution_ms",
    "bus_buffer_bytes",
    "node_view_interval",
    "session_ttl",
    "session_max_detached",
    "replay_window",
    "replay_max_bytes",
)


def parse_symbol_map(text: str | None) -> dict[str, str]:
    """``"700$HK=0700.HK,BRK.B$US=BRK-B"`` -> ``{"700$HK": "0700.HK", ...}`` (ours -> theirs)."""
    out: dict[str, str] = {}
    for pair in (text or "").split(","):
        if pair.strip():
            ours, sep, theirs = pair.partition("=")
            if not sep or not ours.strip() or not theirs.strip():
                raise ConfigError(f"symbol map entry {pair.strip()!r} is not OURS=THEIRS")
            out[ours.strip()] = theirs.strip()
    return out


_HINTS = get_type_hints(GatewayConfig)
NAMES = tuple(f.name for f in fields(GatewayConfig))


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Converts a file, env or flag value to the field's type, naming the key on failure."""
    hint = _HINTS[name]
    args = get_args(hint)
    optional = type(None) in args
    if raw is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {name} must not be empty")
    choices = get_args(_HINTS[name]) if getattr(hint, "__origin__", None) is Literal else ()
    try:
        if choices:
            value = str(raw).upper() if name == "log_level" else str(raw).lower()
            if value not in choices:
                raise ConfigError(f"{source}: {name} must be one of {', '.join(choices)} (got {raw!r})")
            return value
        if hint is int or int in args:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if hint is float or float in args:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError
        if raw == "":
            # An empty value (an unset variable in a compose file, say) must not silently
            # mean "default": for upstream_url that would start the simulator's fake prices.
            raise ConfigError(f"{source}: {name} is empty")
        return raw
    except ConfigError:
        raise
    except (TypeError, ValueError):
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{source}: {name} has an invalid value {raw!r} (expected {kind})") from None


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    # A [tickgate] table is accepted so the settings can live in a shared file.
    if set(data) == {"tickgate"} and isinstance(data["tickgate"], dict):
        data = data["tickgate"]
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in NAMES:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        out[name] = _coerce(name, value, f"config file {path}")
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for name in NAMES:
        key = ENV_PREFIX + name.upper()
        if key in env:
            out[name] = _coerce(name, env[key], f"environment {key}")
    return out


def load_config(
    file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Builds the effective configuration; ``overrides`` (e.g. CLI flags) win over env, env
    over the file. ``None`` values in overrides mean "not given"."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(_from_file(Path(file)))
    values.update(_from_env(os.environ if env is None else env))
    for name, value in (overrides or {}).items():
        if name not in NAMES:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return GatewayConfig(**values)
