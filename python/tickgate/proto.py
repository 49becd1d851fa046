"""Protobuf message classes for the wire schema (``proto/tickgate/v1``).

The classes are built at import time from the ``FileDescriptorSet`` compiled into the core,
so Python clients decode with exactly the schema the core encodes with and no ``protoc``
step or generated code is needed.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tickgate._core import FILE_DESCRIPTOR_SET

__all__ = [
    "POOL",
    "Batch",
    "ClientMessage",
    "Depth",
    "DepthLevel",
    "Error",
    "Kline",
    "Quote",
    "Reply",
    "ServerMessage",
    "Status",
    "Tick",
    "Update",
]

POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(FILE_DESCRIPTOR_SET).file:
    POOL.Add(_file)


def _message(name: str) -> type:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"tickgate.v1.{name}"))


Update = _message("Update")
Tick = _message("Tick")
Quote = _message("Quote")
Depth = _message("Depth")
DepthLevel = _message("DepthLevel")
Kline = _message("Kline")
ServerMessage = _message("ServerMessage")
Batch = _message("Batch")
Reply = _message("Reply")
Error = _message("Error")
Status = _message("Status")
ClientMessage = _message("ClientMessage")
