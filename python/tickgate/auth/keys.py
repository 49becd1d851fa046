"""Signing keys for client tokens: a JWKS file chosen by ``kid``, or one HS256 secret.

The file is a standard JWK Set (RFC 7517). tickgate adds one member a JWK may carry
(unknown members are ignored by other readers): ``retire_at``, the Unix time after which a key
no longer verifies. ``tickgate keys rotate`` (``rotate``) adds a new signing key and gives
the previous ones a ``retire_at`` a grace period away, so tokens signed before a rotation stay
valid until they could have expired anyway; daily rotation is one cron line.

The gateway only verifies, with the public half of each key; the file may hold private keys
(the issuer's copy) or only public ones (``public_set``). The key's own ``alg`` is the only
algorithm a token signed with it may claim: a token cannot pick its algorithm (the RS256 key
used as an HMAC secret attack), and ``alg: none`` never matches a key.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

log = logging.getLogger("tickgate.auth")

__all__ = ["ALGORITHMS", "Key", "KeyError_", "KeyRing", "generate_jwk", "public_set", "rotate"]

#: The algorithms a key may have (a well-kept library does the cryptography: PyJWT with
#: ``cryptography``).
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
#: The shortest HS256 secret accepted: shorter than the hash is guessable offline.
MIN_SECRET_BYTES = 32
#: The kid of the key made from ``--jwt-secret``.
SECRET_KID = "secret"


class KeyError_(ValueError):
    """A key file or key that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Key:
    kid: str
    alg: str
    #: What PyJWT verifies with (a public key object, or the HMAC secret's bytes).
    verifier: Any
    #: What signs (a private key object or the secret); None in a public-only set.
    signer: Any
    #: After this Unix time the key verifies nothing (None: no end).
    retire_at: float | None = None

    def retired(self, now: float) -> bool:
        return self.retire_at is not None and now >= self.retire_at


def _key_from_jwk(jwk: dict[str, Any]) -> Key:
    kid, alg = jwk.get("kid"), jwk.get("alg")
    if not isinstance(kid, str) or not kid:
        raise KeyError_('every key needs a "kid" (tokens choose their key by it)')
    if alg not in ALGORITHMS:
        raise KeyError_(f'key {kid!r}: "alg" must be one of {", ".join(ALGORITHMS)} (got {alg!r})')
    retire_at = jwk.get("retire_at")
    if retire_at is not None and not (isinstance(retire_at, int | float) and math.isfinite(retire_at)):
        raise KeyError_(f"key {kid!r}: retire_at must be a Unix time")
    try:
        parsed = jwt.PyJWK(jwk, algorithm=alg)
    except Exception as e:  # PyJWT raises KeyError for a member missing, among others
        raise KeyError_(f"key {kid!r}: {type(e).__name__}: {e}") from None
    key = parsed.key
    if alg == "HS256":
        if len(key) < MIN_SECRET_BYTES:
            raise KeyError_(f"key {kid!r}: an HS256 key needs at least {MIN_SECRET_BYTES} bytes")
        return Key(kid, alg, key, key, retire_at)
    private = "d" in jwk
    verifier = key.public_key() if private else key
    return Key(kid, alg, verifier, key if private else None, retire_at)


class KeyRing:
    """The keys tokens are verified with, by ``kid``; re-read from its file when the file
    changes (``poll``, called on a timer) or on ``reload`` (SIGHUP). A file that no longer
    parses leaves the keys as they were and logs why: a bad edit must not lock everyone out."""

    def __init__(self, keys: list[Key], path: Path | None = None) -> None:
        self._keys = {k.kid: k for k in keys}
        self.path = path
        self._stamp = self._file_stamp()
        #: Reloads that failed (the previous keys stayed).
        self.reload_failures = 0

    @classmethod
    def from_secret(cls, secret: str) -> KeyRing:
        raw = secret.encode()
        if len(raw) < MIN_SECRET_BYTES:
            raise KeyError_(f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes")
        return cls([Key(SECRET_KID, "HS256", raw, raw)])

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        path = Path(path)
        return cls(_read(path), path)

    def get(self, kid: str | None) -> Key | None:
        """The key ``kid`` names; a token without a kid may use the only key there is."""
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def signing_key(self) -> Key:
        """The newest key that is not retiring and can sign."""
        for key in reversed(list(self._keys.values())):
            if key.retire_at is None and key.signer is not None:
                return key
        raise KeyError_("no key here can sign (a public-only set, or every key is retiring)")

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reloads if the file changed since it was read; True if the keys changed."""
        stamp = self._file_stamp()
        if self.path is None or stamp is None or stamp == self._stamp:
            return False
        return self.reload()

    def reload(self) -> bool:
        if self.path is None:
            return False
        self._stamp = self._file_stamp()
        try:
            keys = _read(self.path)
        except KeyError_ as e:
            self.reload_failures += 1
            log.error("keeping the previous keys: %s", e)
            return False
        self._keys = {k.kid: k for k in keys}
        log.info("token keys reloaded from %s: %s", self.path, ", ".join(self.kids()))
        return True


def _load_set(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise KeyError_(f"key file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise KeyError_(f"key file {path}: {e}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise KeyError_(f'key file {path}: not a JWK Set (an object with a "keys" list)')
    return keys


def _read(path: Path) -> list[Key]:
    keys = [_key_from_jwk(jwk) for jwk in _load_set(path)]
    if not keys:
        raise KeyError_(f"key file {path} holds no keys")
    if len({k.kid for k in keys}) != len(keys):
        raise KeyError_(f"key file {path}: two keys share a kid")
    return keys


# -- making and rotating keys -------------------------------------------------------------------


def generate_jwk(alg: str, kid: str | None = None) -> dict[str, Any]:
    """A new private JWK for ``alg``, with its ``kid``, ``alg`` and ``use``."""
    kid = kid or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    if alg == "HS256":
        jwk = HMACAlgorithm.to_jwk(secrets.token_bytes(32), as_dict=True)
    elif alg == "RS256":
        jwk = RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048), as_dict=True)
    elif alg == "ES256":
        jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    elif alg == "EdDSA":
        jwk = OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate(), as_dict=True)
    else:
        raise KeyError_(f"alg must be one of {', '.join(ALGORITHMS)} (got {alg!r})")
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def public_set(keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The set with private members removed (what a gateway that only verifies needs)."""
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    out = []
    for jwk in keys:
        if jwk.get("kty") == "oct":
            continue  # a shared secret has no public half
        out.append({k: v for k, v in jwk.items() if k not in private})
    return {"keys": out}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file), readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def rotate(
    path: str | Path, alg: str = "ES256", grace_s: float = 86400.0, public: str | Path | None = None
) -> str:
    """Adds a new signing key to the set at ``path`` (made if missing); keys that were signing
    retire in ``grace_s``, keys already retired are removed. Returns the new kid."""
    path = Path(path)
    now = time.time()
    keys = _load_set(path) if path.exists() else []
    kept = []
    for jwk in keys:
        retire_at = jwk.get("retire_at")
        if isinstance(retire_at, int | float) and retire_at <= now:
            continue
        if retire_at is None:
            jwk = {**jwk, "retire_at": int(now + grace_s)}
        kept.append(jwk)
    new = generate_jwk(alg)
    kept.append(new)
    for jwk in kept:
        _key_from_jwk(jwk)  # never write a set the gateway would refuse
    _write(path, {"keys": kept})
    if public is not None:
        _write(Path(public), public_set(kept))
    return str(new["kid"])
