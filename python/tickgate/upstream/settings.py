"""``UpstreamSettings``: everything a provider connection needs to know, in one frozen object
made from the gateway's config (each fact defined once, in ``GatewayConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tickgate.config import AuthMode, GatewayConfig, UnsubscribeMode

#: Largest provider message accepted (iTick frames are well under 4 KiB).
MAX_PROVIDER_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str
    token: str = field(default="", repr=False)
    auth: AuthMode = "header"
    unsubscribe_mode: UnsubscribeMode = "message"
    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    idle_timeout: float = 60.0
    data_timeout: float = 300.0
    connect_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    subscribe_chunk: int = 200
    max_message_bytes: int = MAX_PROVIDER_MESSAGE_BYTES

    @classmethod
    def from_config(cls, config: GatewayConfig, url: str, token: str | None) -> UpstreamSettings:
        """``url``/``token`` are passed apart: the embedded simulator supplies its own."""
        return cls(
            url=url,
            token=token or "",
            auth=config.upstream_auth,
            unsubscribe_mode=config.upstream_unsubscribe,
            ping_interval=config.upstream_ping_interval,
            pong_timeout=config.upstream_pong_timeout,
            idle_timeout=config.upstream_idle_timeout,
            data_timeout=config.upstream_data_timeout,
            connect_timeout=config.upstream_connect_timeout,
            backoff_initial=config.upstream_backoff_initial,
            backoff_max=config.upstream_backoff_max,
            subscribe_chunk=config.upstream_subscribe_chunk,
        )
