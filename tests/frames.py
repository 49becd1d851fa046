"""iTick frames in every documented form (docs/providers.md), shared by the core tests."""

from __future__ import annotations

import json

T0 = 1731689407000  # 2024-11-15 16:50:07 UTC
#: When these frames are taken to have arrived: the core's plausibility check (an event time far
#: from its receipt is dropped) compares with this, never with the calendar, so the recorded
#: frames decode the same whatever today's date.
RECV_MS = T0 + 93_000

GREETING = b'{"code":1,"msg":"Connected Successfully"}'
AUTH_OK = b'{"code":1,"resAc":"auth","msg":"authenticated","data":{"params":"tok"}}'
AUTH_FAILED = b'{"code":0,"resAc":"auth","msg":"auth failed"}'
SUBSCRIBE_OK = b'{"code":1,"resAc":"subscribe","msg":"subscribe Successfully"}'
SUBSCRIBE_LIMIT = b'{"code":0,"resAc":"subscribe","msg":"exceeding the maximum subscription limit"}'
PONG_STR = b'{"resAc":"pong","data":{"params":"1731688569840"}}'
PONG_NUM = b'{"resAc":"pong","data":{"params":1731688569840}}'

QUOTE = (
    b'{"code":1,"data":{"s":"AAPL.US","ld":225.215,"o":226.27,"h":226.92,"l":224.44,"t":1731689407000,'
    b'"v":16742235,"tu":3774688301.452,"ts":0,"type":"quote"}}'
)
TICK = b'{"code":1,"data":{"s":"AAPL$US","ld":225.2,"t":1731689407100,"v":100,"d":2,"te":0,"type":"tick"}}'
DEPTH = (
    b'{"code":1,"data":{"s":"AAPL.US","a":[{"po":1,"p":3034.01,"v":10.6023,"o":10.6023}],'
    b'"b":[{"po":1,"p":3034,"v":20.9758,"o":20.9758}],"type":"depth"}}'
)
KLINE_FLAT = (
    b'{"code":1,"data":{"s":"AAPL.US","o":3055.36,"h":3061.41,"l":3055.24,"c":3059.39,"v":28,'
    b'"tu":157513,"t":1731660060000,"type":"kline@1"}}'
)
KLINE_NESTED = (
    b'{"code":0,"msg":null,"data":{"s":"AAPL.US","t":1,"k":{"tu":157513,"c":3059.39,"t":1731660060000,'
    b'"v":28,"h":3061.41,"l":3055.24,"o":3055.36}}}'
)


def quote(symbol: str, last: float, t: int = T0, **extra: float) -> bytes:
    return json.dumps(
        {"code": 1, "data": {"s": symbol, "ld": last, "t": t, "type": "quote", **extra}}
    ).encode()


def tick(symbol: str, price: float, volume: float, t: int = T0) -> bytes:
    return json.dumps(
        {"code": 1, "data": {"s": symbol, "ld": price, "v": volume, "t": t, "type": "tick"}}
    ).encode()
