"""``UpstreamSettings``: everything a provider connection needs to know, in one frozen object
made from the gateway's config (each fact defined once, in ``GatewayConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tickgate.config import AuthMode, GatewayConfig, UnsubscribeMode

#: Largest provider message accepted (iTick frames are well under 4 KiB).
MAX_PROVIDER_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSettings:
    """No defaults here: they live in ``GatewayConfig``; build one with ``from_config``."""

    url: str
    token: str = field(repr=False)
    auth: AuthMode
    unsubscribe_mode: UnsubscribeMode
    ping_interval: float
    pong_timeout: float
    idle_timeout: float
    data_timeout: float
    connect_timeout: float
    auth_timeout: float
    backoff_initial: float
    backoff_max: float
    subscribe_chunk: int
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
            auth_timeout=config.upstream_auth_timeout,
            backoff_initial=config.upstream_backoff_initial,
            backoff_max=config.upstream_backoff_max,
            subscribe_chunk=config.upstream_subscribe_chunk,
        )
