"""The Python client SDK: a gateway connection that reconnects and resumes by itself, yielding
typed updates.

    import tickgate.client

    async with tickgate.client.connect("ws://127.0.0.1:8080/", protocol="proto") as c:
        await c.subscribe(["AAPL$US"], types=["quote", "tick"])
        async for update in c:
            print(update.channel, update.seq)
"""

from tickgate.client.connection import AuthRefused, Client, ClientError, connect
from tickgate.client.types import ConnectionEvent, Depth, DepthLevel, Kline, Quote, Tick, Update

__all__ = [
    "AuthRefused",
    "Client",
    "ClientError",
    "ConnectionEvent",
    "Depth",
    "DepthLevel",
    "Kline",
    "Quote",
    "Tick",
    "Update",
    "connect",
]
