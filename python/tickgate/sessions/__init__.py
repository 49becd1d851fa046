"""Client sessions: what lets a client that drops come back and carry on.

A connected client's session is its connection: its subscriptions and mode are in the core's
dispatcher, and its id is derived from the connection's (``SessionIds``), so holding 100k
connected clients costs nothing more. When a client with subscriptions goes, its session is
kept for ``session_ttl`` as a ``SessionRecord`` (``MemorySessions``). A ``resume`` on a new
connection takes the session over (closing the old connection if it is still there), re-attaches
its subscriptions and mode, and replays what the client missed from the ingest's ``History``.
"""

from tickgate.sessions.history import History
from tickgate.sessions.ids import SessionIds
from tickgate.sessions.memory import MemorySessions, SessionRecord

__all__ = ["History", "MemorySessions", "SessionIds", "SessionRecord"]
