"""Client tokens: verifying a JWT into an ``Identity``, and issuing one.

A token must name a key the ring knows (``kid``) and be signed with that key's algorithm;
``exp`` and ``sub`` are required (a token that never expires is a password that cannot be
changed), ``nbf`` and ``iat`` are checked when present, ``aud`` and ``iss`` when the gateway
is configured with them. Every refusal is an ``AuthFailure`` with a short reason for the
client, the log and the audit trail; none of them echo the token.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt

from tickgate.auth.entitlements import EntitlementError, Entitlements
from tickgate.auth.keys import KeyRing

__all__ = ["AuthFailure", "Identity", "Verifier", "issue"]

#: The longest token accepted (a token is a header value or query parameter; this bounds the
#: work a stranger can make the gateway do before it knows anything).
MAX_TOKEN_BYTES = 8192


class AuthFailure(Exception):
    """A token refused; ``reason`` is a short word for the client, the log and the metrics
    (``expired``, ``bad_signature``, ``unknown_kid``...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail or reason.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token names, until when, and what it may see."""

    subject: str
    #: Unix seconds.
    expires: float
    #: None: every symbol.
    entitlements: Entitlements | None = None
    kid: str = ""


_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "wrong_algorithm"),
    (jwt.InvalidTokenError, "malformed"),
)


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, to choose the key (PyJWT's own reader decodes and checks the whole
    token, which ``jwt.decode`` then does again: a third of the cost of a verification)."""
    head, dot, _ = token.partition(".")
    try:
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        header = None
    if not dot or not isinstance(header, dict):
        raise AuthFailure("malformed", "not a JWT")
    return header


class Verifier:
    def __init__(
        self,
        keys: KeyRing,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        self.keys = keys
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_s

    def verify(self, token: str, now: float | None = None) -> Identity:
        """The token's identity; raises ``AuthFailure``."""
        if not token:
            raise AuthFailure("missing", "no token given")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthFailure("malformed", f"a token over {MAX_TOKEN_BYTES} bytes")
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise AuthFailure("wrong_algorithm", "unsigned tokens (alg none) are refused")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthFailure("malformed", "kid must be a string")
        key = self.keys.get(kid)
        if key is None:
            raise AuthFailure("unknown_kid", "no such key" if kid else "the token names no key (kid)")
        now = time.time() if now is None else now
        if key.retired(now):
            raise AuthFailure("unknown_kid", "the token's key was retired")
        if alg != key.alg:
            raise AuthFailure("wrong_algorithm", f"key {key.kid!r} signs with {key.alg}")
        options: dict[str, Any] = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                key.verifier,
                algorithms=[key.alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=options,
            )
        except jwt.InvalidTokenError as e:
            for kind, reason in _REFUSALS:
                if isinstance(e, kind):
                    raise AuthFailure(reason, str(e)) from None
            raise AuthFailure("malformed", str(e)) from None  # pragma: no cover - InvalidTokenError is last
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 256:
            raise AuthFailure("missing_claim", "sub must be a non-empty string")
        try:
            entitled = Entitlements.from_claim(claims.get("symbols"))
        except EntitlementError as e:
            raise AuthFailure("bad_claim", str(e)) from None
        try:
            expires = float(claims["exp"])
        except (OverflowError, TypeError, ValueError):
            raise AuthFailure("bad_claim", "exp is not a time") from None
        return Identity(subject, expires, entitled, key.kid)


def issue(
    keys: KeyRing,
    subject: str,
    ttl_s: float,
    *,
    symbols: list[str] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """A token for ``subject`` valid ``ttl_s`` seconds, signed with the ring's signing key;
    ``symbols``: the entitlements claim (patterns like ``*$US``)."""
    key = keys.signing_key()
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": subject, "iat": int(now), "nbf": int(now), "exp": int(now + ttl_s)}
    if symbols is not None:
        Entitlements.from_claim(symbols)  # refuse to sign a claim the gateway would refuse
        claims["symbols"] = symbols
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, key.signer, algorithm=key.alg, headers={"kid": key.kid})
