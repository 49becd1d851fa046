"""The bus between the ingest role and the edge roles.

One small interface (``tickgate.bus.base``), two implementations today:

- ``InProcessBus``: ingest and one edge in one process (``tickgate serve``, the embedded
  default). Updates are handed over as the core's objects; nothing is copied.
- ``BusServer`` / ``BusClient`` (``tickgate.bus.server``, ``tickgate.bus.client``): one
  ingest process and N edge processes of a node over a Unix domain socket (``tickgate serve
  --workers N``). Updates travel as the core's bus records: encoded once in the ingest, never
  again in an edge. Without Redis the ingest also holds the node's sessions.

Interest flows edge -> ingest (each edge reports its first and last receivers of a channel;
the subscription pool ref-counts across edges); updates flow ingest -> edge, each only to the
edges that hold a receiver. A broker between nodes (Redis, NATS) would be a third
implementation of the same two sides.
"""

from tickgate.bus.base import EdgeSink, FeedState, IngestState, Interest
from tickgate.bus.inprocess import InProcessBus

__all__ = ["EdgeSink", "FeedState", "InProcessBus", "IngestState", "Interest"]
