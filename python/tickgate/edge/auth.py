"""The edge's side of client authentication (``auth = "jwt"``).

A token comes at the handshake (``Authorization: Bearer``, or ``?token=`` for browsers, which
cannot set headers on a WebSocket) or in a first ``{"action":"auth","token":...}`` message.
A bad token at the handshake is refused with 401 before any WebSocket exists; a connection
without one gets nothing (not even its welcome) until it authenticates, and is closed with
4001 if it has not within ``auth_timeout``.

A token's expiry is watched: when it passes, the client gets ``token_expired`` and has
``reauth_grace`` to send a fresh token on the same connection (its stream goes on
meanwhile), else it is closed with 4001. Deadlines sit in one heap checked once a second:
one timer for every connection, as with liveness pings.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from picows import WSCloseCode

from tickgate._core import split_channel
from tickgate.auth import AuthFailure, Identity, KeyError_, KeyRing, Verifier
from tickgate.config import ConfigError, GatewayConfig
from tickgate.edge.replies import ErrorReply, Reply, encode_reply, error_reply
from tickgate.errors import ErrorCode
from tickgate.logs import LogThrottle

if TYPE_CHECKING:
    from tickgate.audit import AuditLog
    from tickgate.edge.connection import ClientConnection
    from tickgate.edge.hub import EdgeHub

log = logging.getLogger("tickgate.edge.auth")

__all__ = ["CLOSE_UNAUTHENTICATED", "AuthCounters", "EdgeAuth", "authenticate", "make_verifier", "refuse"]

#: The close code of a connection refused for its token (the 4000s are the application's).
CLOSE_UNAUTHENTICATED = WSCloseCode(4001)
#: How often deadlines are checked, and how often the key file is looked at for changes.
SWEEP_S = 1.0
KEYS_POLL_S = 2.0

_AUTH_DEADLINE, _EXPIRED, _GRACE_OVER = 0, 1, 2


def make_verifier(config: GatewayConfig) -> Verifier | None:
    """The verifier ``config`` asks for (None with ``auth = "none"``); raises ``ConfigError``."""
    if config.auth != "jwt":
        return None
    try:
        if config.jwt_secret is not None:
            keys = KeyRing.from_secret(config.jwt_secret)
        else:
            assert config.jwt_keys is not None  # the config checks one of the two is set
            keys = KeyRing.from_file(config.jwt_keys)
    except KeyError_ as e:
        raise ConfigError(str(e)) from None
    return Verifier(keys, audience=config.jwt_audience, issuer=config.jwt_issuer, leeway_s=config.jwt_leeway)


@dataclass(slots=True)
class AuthCounters:
    succeeded: int = 0
    #: Refusals by reason (``expired``, ``bad_signature``, ``timeout``...).
    failed: dict[str, int] | None = None
    expired_closed: int = 0
    not_entitled: int = 0

    def refused(self, reason: str) -> None:
        if self.failed is None:
            self.failed = {}
        self.failed[reason] = self.failed.get(reason, 0) + 1


def _live(entry: tuple[float, int, int, ClientConnection, float]) -> bool:
    _, _, what, conn, expires = entry
    if conn.closed:
        return False
    if what == _AUTH_DEADLINE:
        return conn.identity is None
    return conn.identity is not None and conn.identity.expires == expires


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None  # "bearer" is no secret


class EdgeAuth:
    def __init__(
        self,
        verifier: Verifier,
        config: GatewayConfig,
        audit: AuditLog | None,
        connections: Iterable[ClientConnection] = (),
    ) -> None:
        self.verifier = verifier
        # The open connections (to cut off those whose key was taken away on a reload).
        self._connections = connections
        self._timeout = config.auth_timeout
        self._grace = config.reauth_grace
        self._audit = audit
        self.counters = AuthCounters()
        # (due, n, what, connection, the expiry it was set for): stale entries (a client that
        # re-authenticated or left) are skipped when they come up, and swept out when they
        # outnumber the live ones.
        self._due: list[tuple[float, int, int, ClientConnection, float]] = []
        self._n = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._next_poll = 0.0
        self._compact_at = 1024
        #: Open connections by token subject (for a subject's fair share of the upstream).
        self._subjects: dict[str, set[ClientConnection]] = {}
        # Refusals are logged throttled: a stranger sending bad tokens cannot flood the log.
        self._refusal_log = LogThrottle(log)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- verifying ---------------------------------------------------------------------------

    def verify(self, token: str, address: str) -> Identity | AuthFailure:
        """The identity a token gives, or why not (counted, logged and audited either way)."""
        try:
            identity = self.verifier.verify(token)
        except AuthFailure as e:
            self.refused(e.reason, address, e.detail)
            return e
        except Exception as e:  # whatever a crafted token makes a library raise: refused, not a 500
            failure = AuthFailure("malformed", f"unreadable token ({type(e).__name__})")
            self.refused(failure.reason, address, failure.detail)
            return failure
        self.counters.succeeded += 1
        if self._audit is not None:
            self._audit.record("auth", sub=identity.subject, addr=address, ok=True, kid=identity.kid)
        return identity

    def refused(self, reason: str, address: str, detail: str = "", subject: str | None = None) -> None:
        self.counters.refused(reason)
        self._refusal_log.log(logging.INFO, "auth refused for %s: %s", address, detail or reason)
        if self._audit is not None:
            self._audit.record("auth", sub=subject, addr=address, ok=False, reason=reason)

    # -- connections -------------------------------------------------------------------------

    def awaiting(self, conn: ClientConnection) -> None:
        """``conn`` came without a token: it has ``auth_timeout`` to send one."""
        self._push(time.monotonic() + self._timeout, _AUTH_DEADLINE, conn, 0.0)

    def authenticated(
        self, conn: ClientConnection, identity: Identity, previous: Identity | None = None
    ) -> None:
        """``conn`` holds ``identity`` from now on (in place of ``previous``, on a fresh
        ``auth``); its expiry is watched."""
        conn.identity = identity
        self._subjects.setdefault(identity.subject, set()).add(conn)
        if previous is not None and previous.expires == identity.expires:
            return  # the same expiry (the same token again): the entry watching it stands
        left = identity.expires - time.time()
        self._push(time.monotonic() + max(0.0, left), _EXPIRED, conn, identity.expires)

    def reload(self) -> None:
        """SIGHUP: the key file now, and what it changes for open connections."""
        if self.verifier.keys.reload():
            self.keys_changed(self._connections)

    def keys_changed(self, connections: Iterable[ClientConnection]) -> int:
        """After a reload: connections whose token's key is gone or retired are told their
        token expired (a fresh one within the grace period, or closed), as if it had: a key
        taken out because it leaked stops serving at once. Returns how many."""
        now, monotonic = time.time(), time.monotonic()
        keys = self.verifier.keys
        revoked = 0
        for conn in list(connections):
            identity = conn.identity
            if conn.closed or identity is None:
                continue
            key = keys.get(identity.kid)
            if key is None or key.kid != identity.kid or key.retired(now):
                revoked += 1
                cut = Identity(identity.subject, now, identity.entitlements, identity.kid)
                conn.identity = cut
                self._push(monotonic, _EXPIRED, conn, cut.expires)
        return revoked

    def forget(self, conn: ClientConnection) -> None:
        """``conn`` is gone."""
        if conn.identity is not None:
            peers = self._subjects.get(conn.identity.subject)
            if peers is not None:
                peers.discard(conn)
                if not peers:
                    del self._subjects[conn.identity.subject]

    def connections_of(self, conn: ClientConnection) -> set[ClientConnection] | None:
        """The open connections with ``conn``'s subject (None: it has none yet)."""
        return self._subjects.get(conn.identity.subject) if conn.identity is not None else None

    def _push(self, due: float, what: int, conn: ClientConnection, expires: float) -> None:
        heapq.heappush(self._due, (due, next(self._n), what, conn, expires))

    def _sweep(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + KEYS_POLL_S
            try:
                if self.verifier.keys.poll():
                    self.keys_changed(self._connections)
            except Exception:  # never at the cost of this second's deadlines
                log.exception("reading the key file failed")
        due = self._due
        while due and due[0][0] <= now:
            _, _, what, conn, expires = heapq.heappop(due)
            if conn.closed:
                continue
            identity = conn.identity
            if what == _AUTH_DEADLINE:
                if identity is None:
                    self.refused("timeout", conn.peer, f"no token within {self._timeout:g} s")
                    conn.close(CLOSE_UNAUTHENTICATED, f"{ErrorCode.UNAUTHENTICATED}: no token in time")
            elif identity is None or identity.expires != expires:
                continue  # re-authenticated since: a later entry watches the new token
            elif what == _EXPIRED:
                conn.send(
                    error_reply(
                        ErrorCode.TOKEN_EXPIRED,
                        f"the token expired: send a fresh one within {self._grace:g} s "
                        '({"action":"auth","token":...}) or be disconnected',
                    )
                )
                self._push(now + self._grace, _GRACE_OVER, conn, expires)
            else:
                self.counters.expired_closed += 1
                self.refused("expired", conn.peer, "no fresh token within the grace period", identity.subject)
                conn.close(CLOSE_UNAUTHENTICATED, f"{ErrorCode.TOKEN_EXPIRED}: no fresh token in time")
        if len(due) > self._compact_at:  # amortized: the heap is at most twice what is live
            self._due = [e for e in due if _live(e)]
            heapq.heapify(self._due)
            self._compact_at = max(1024, 2 * len(self._due))

    def figures(self) -> dict[str, object]:
        c = self.counters
        return {
            "auth_succeeded": c.succeeded,
            "auth_failed": dict(c.failed or {}),
            "auth_expired_closed": c.expired_closed,
            "not_entitled": c.not_entitled,
            "key_reload_failures": self.verifier.keys.reload_failures,
        }


# -- the auth command ---------------------------------------------------------------------------


def refuse(conn: ClientConnection, hub: EdgeHub, reason: str, detail: str, *, counted: bool = False) -> None:
    """Tells ``conn`` why (``unauthenticated``) and closes it with 4001. ``counted``: the
    refusal was already counted and audited (by ``EdgeAuth.verify``)."""
    if hub.auth is not None and not counted:
        hub.auth.refused(reason, conn.peer, detail, conn.subject)
    conn.send(error_reply(ErrorCode.UNAUTHENTICATED, f"{reason}: {detail}"))
    conn.close(CLOSE_UNAUTHENTICATED, f"{ErrorCode.UNAUTHENTICATED}: {reason}")


def authenticate(
    token: str, conn: ClientConnection, hub: EdgeHub
) -> tuple[Reply | ErrorReply | None, bytes | None]:
    """``{"action":"auth"}``: the first token of a connection that gave none at the handshake
    (its welcome follows the reply), or a fresh one before the current one expires. A fresh
    token must name the same subject; channels it no longer entitles are unsubscribed (an
    error ``not_entitled`` names them after the reply). A refused token closes the connection."""
    auth = hub.auth
    if auth is None:
        return error_reply(ErrorCode.INVALID_MESSAGE, "this gateway does not use tokens (auth = none)"), None
    found = auth.verify(token, conn.peer)
    if isinstance(found, AuthFailure):
        refuse(conn, hub, found.reason, found.detail, counted=True)
        return None, None
    previous = conn.identity
    if previous is not None and found.subject != previous.subject:
        refuse(conn, hub, "subject_changed", "a fresh token must name the connection's subject")
        return None, None
    auth.authenticated(conn, found, previous)
    reply = Reply(type="success", action="auth", subject=found.subject, expires_ms=int(found.expires * 1000))
    if previous is None:
        welcome = Reply(type="welcome", session=hub.session_of(conn), epoch=hub.epoch)
        return reply, encode_reply(hub.dispatcher, conn.format, welcome)
    entitled = found.entitlements
    held = hub.dispatcher.channels_of(conn.id)
    dropped = [c for c in held if entitled is not None and not entitled.allows(split_channel(c)[0])]
    if not dropped:
        return reply, None
    hub.unsubscribe(conn, dropped)
    notice = error_reply(
        ErrorCode.NOT_ENTITLED,
        "the fresh token does not entitle these: unsubscribed",
        channels=sorted(dropped),
    )
    return reply, encode_reply(hub.dispatcher, conn.format, notice)
