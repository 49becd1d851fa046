"""Deterministic iTick frames for benchmarks: realistic sizes, many symbols, every kind."""

from __future__ import annotations

import json
import random

T0 = 1731689407000
#: The frames' receipt time, passed to the core (its event-age check compares with it, never with
#: the calendar).
RECV_MS = T0 + 93_000


def frames(
    n: int,
    *,
    seed: int = 7,
    symbols: int = 200,
    kinds: tuple[str, ...] = ("quote", "tick", "depth", "kline@1"),
) -> list[bytes]:
    rng = random.Random(seed)
    names = [f"SYM{i}.US" if i % 3 else f"{600000 + i}.SH" for i in range(symbols)]
    prices = {s: rng.uniform(5, 500) for s in names}
    out = []
    for i in range(n):
        s = rng.choice(names)
        price = prices[s] = round(max(0.01, prices[s] * (1 + rng.gauss(0, 0.001))), 2)
        t = T0 + i * 10
        kind = kinds[i % len(kinds)]
        if kind == "quote":
            data = {
                "s": s,
                "ld": price,
                "o": round(price * 0.99, 2),
                "h": round(price * 1.01, 2),
                "l": round(price * 0.98, 2),
                "t": t,
                "v": 1000 + i,
                "tu": round(price * (1000 + i), 3),
                "ts": 0,
                "type": "quote",
            }
        elif kind == "tick":
            data = {
                "s": s,
                "ld": price,
                "t": t,
                "v": rng.randint(1, 500),
                "d": rng.randint(0, 2),
                "te": 0,
                "type": "tick",
            }
        elif kind == "depth":
            data = {
                "s": s,
                "type": "depth",
                "a": [
                    {
                        "po": k,
                        "p": round(price + 0.01 * k, 2),
                        "v": rng.randint(1, 900),
                        "o": rng.randint(1, 9),
                    }
                    for k in range(1, 6)
                ],
                "b": [
                    {
                        "po": k,
                        "p": round(price - 0.01 * k, 2),
                        "v": rng.randint(1, 900),
                        "o": rng.randint(1, 9),
                    }
                    for k in range(1, 6)
                ],
            }
        else:
            data = {
                "s": s,
                "o": price,
                "h": round(price * 1.002, 2),
                "l": round(price * 0.998, 2),
                "c": price,
                "v": rng.randint(100, 9000),
                "tu": round(price * 5000, 2),
                "t": t - t % 60000,
                "type": kind,
            }
        out.append(json.dumps({"code": 1, "data": data}, separators=(",", ":")).encode())
    return out
