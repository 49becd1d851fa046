"""Session ids that need no storage while a client is connected: the connection's id in the
core's dispatcher, signed with a per-process secret so no one can take over a session they
were not given."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_TAG_BYTES = 12
#: The form of every id ``issue`` gives: the connection id in hex, a dot, the tag in hex.
SESSION_ID_PATTERN = rf"^[0-9a-f]{{1,16}}\.[0-9a-f]{{{2 * _TAG_BYTES}}}\Z"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


class SessionIds:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _tag(self, conn_id: int) -> str:
        digest = hmac.new(self._secret, conn_id.to_bytes(8, "big"), hashlib.blake2s).digest()
        return digest[:_TAG_BYTES].hex()

    def issue(self, conn_id: int) -> str:
        return f"{conn_id:x}.{self._tag(conn_id)}"

    def verify(self, session: str) -> int | None:
        """The connection id a session id was issued for, or None if it was not issued here."""
        if not _SESSION_ID.fullmatch(session):  # "-1.<tag>" or "0x..." would parse as ints
            return None
        raw, _, tag = session.partition(".")
        conn_id = int(raw, 16)
        ok = hmac.compare_digest(tag.encode(), self._tag(conn_id).encode())
        return conn_id if ok else None
