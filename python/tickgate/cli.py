"""``tickgate`` command line: a thin shell over ``tickgate.Gateway`` and the simulators.

tickgate serve [--config FILE] [--host H] [--port P] [--workers N|auto]
               [--upstream-url URL] [--upstream-token T]
               [--auth none|jwt] [--jwt-keys FILE | --jwt-secret S] [--tls-cert PEM --tls-key PEM]
tickgate simulate [--protocol itick|finnhub] [--host H] [--port P] [--rate R] [--seed S] [--token T ...]
tickgate keys rotate --jwt-keys FILE [--alg ES256] [--grace 24h] [--public FILE]
tickgate token --sub USER [--ttl 1h] [--symbols '*$US,700$HK'] (--jwt-keys FILE | --jwt-secret S)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from tickgate.config import ConfigError, GatewayConfig, load_config
from tickgate.node.loop import run as _run

log = logging.getLogger("tickgate")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickgate", description="Real-time market-data push gateway.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (no --upstream-url: embedded simulator feed)")
    serve.add_argument("--config", help="TOML file with settings (see docs/configuration.md)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080; 0 picks a free one)")
    serve.add_argument(
        "--workers",
        help="edge worker processes sharing the port beside one ingest process ('auto': one per core; "
        "default 0: everything in one process)",
    )
    serve.add_argument(
        "--upstream-provider",
        choices=["itick", "finnhub", "alpaca"],
        help="the provider's protocol (default itick; finnhub, alpaca: backup protocols)",
    )
    serve.add_argument("--upstream-url", help="the provider's WebSocket URL, e.g. wss://api.itick.org/stock")
    serve.add_argument("--upstream-token", help="provider API token")
    serve.add_argument(
        "--backup-provider", choices=["itick", "finnhub", "alpaca"], help="a backup provider to fail over to"
    )
    serve.add_argument("--backup-url", help="the backup provider's WebSocket URL")
    serve.add_argument("--backup-token", help="the backup provider's API token")
    serve.add_argument(
        "--redis-url", help="Redis for sessions, e.g. redis://127.0.0.1:6379/0 (default: memory)"
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument("--auth", choices=["none", "jwt"], help="client authentication (default none)")
    serve.add_argument("--jwt-keys", help="JWKS file of the keys client tokens are signed with")
    serve.add_argument("--jwt-secret", help="one HS256 secret instead of --jwt-keys (quick tests)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve wss://")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--audit-dir", help="write the audit log (JSON lines, a file per day) here")

    keys = sub.add_parser("keys", help="manage the keys client tokens are signed with")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="add a new signing key; the previous ones retire after --grace"
    )
    rotate.add_argument("--jwt-keys", required=True, help="the JWKS file (made if missing; mode 0600)")
    rotate.add_argument("--alg", choices=["ES256", "EdDSA", "RS256", "HS256"], default="ES256")
    rotate.add_argument("--grace", default="24h", help="how long the previous keys stay valid (default 24h)")
    rotate.add_argument("--public", help="also write the public keys here (for gateways that only verify)")

    token = sub.add_parser("token", help="issue a client token")
    token.add_argument("--sub", required=True, help="the subject (user id) the token names")
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 90s, 30m, 1h, 7d (default 1h)")
    token.add_argument("--symbols", help="entitlements, comma-separated: '*$US,700$HK' (default: all)")
    token.add_argument("--jwt-keys", help="sign with this JWKS file's newest key")
    token.add_argument("--jwt-secret", help="sign with this HS256 secret")
    token.add_argument("--audience", help="the aud claim")
    token.add_argument("--issuer", help="the iss claim")

    sim = sub.add_parser("simulate", help="run a provider simulator (iTick, or a Finnhub-style backup)")
    sim.add_argument(
        "--protocol",
        choices=["itick", "finnhub", "alpaca"],
        default="itick",
        help="which provider's protocol to speak",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9100)
    sim.add_argument("--rate", type=float, default=2.0, help="updates per second per symbol and type")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--token", action="append", help="accepted token (repeatable; default: any non-empty)")
    sim.add_argument("--max-subscriptions", type=int, default=1000)
    sim.add_argument(
        "--symbol-style",
        choices=["dot", "dollar"],
        default="dot",
        help="symbols in pushes as AAPL.US (older iTick docs) or AAPL$US",
    )
    sim.add_argument("--log-level", default="INFO")
    return p


async def _serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    gateway: Any
    if config.workers:
        from tickgate.node.supervisor import Node

        gateway = Node(config, config.workers)
    else:
        from tickgate.gateway import Gateway

        gateway = Gateway(config)
    await gateway.start()
    print(f"tickgate serving on {gateway.url}", flush=True)
    waiter = asyncio.ensure_future(gateway.serve_forever())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiter, stopper):
        task.cancel()
    await gateway.stop()


async def _simulate(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from tickgate.simulate import ItickSimulator, SimulatorConfig
    from tickgate.simulate.finnhub_server import FinnhubConfig, FinnhubSimulator

    tokens = frozenset(args.token) if args.token else None
    if args.protocol == "alpaca":
        from tickgate.simulate.alpaca_server import AlpacaConfig, AlpacaSimulator

        alpaca = AlpacaSimulator(AlpacaConfig(host=args.host, port=args.port, rate=args.rate, seed=args.seed))
        await alpaca.start()
        print(f"Alpaca-style simulator on {alpaca.url}", flush=True)
        await stop.wait()
        await alpaca.stop()
        return
    if args.protocol == "finnhub":
        backup = FinnhubSimulator(
            FinnhubConfig(host=args.host, port=args.port, rate=args.rate, seed=args.seed, tokens=tokens)
        )
        await backup.start()
        print(f"Finnhub-style simulator on {backup.url}", flush=True)
        await stop.wait()
        await backup.stop()
        return
    sim = ItickSimulator(
        SimulatorConfig(
            host=args.host,
            port=args.port,
            rate=args.rate,
            seed=args.seed,
            tokens=tokens,
            max_subscriptions=args.max_subscriptions,
            symbol_style=args.symbol_style,
        )
    )
    await sim.start()
    print(f"iTick simulator on {sim.url}", flush=True)
    await stop.wait()
    await sim.stop()


def _workers(raw: str | None) -> int | None:
    if raw is None:
        return None
    if raw == "auto":
        return os.cpu_count() or 1
    if not raw.isdigit():
        raise ConfigError(f"--workers must be a number or 'auto' (got {raw!r})")
    return int(raw)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # picows logs every connection at INFO; at 100k clients that is noise, not information.
    if level != "DEBUG":
        logging.getLogger("picows").setLevel(logging.WARNING)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``7d`` or plain seconds -> seconds."""
    raw = text.strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in _UNITS else (raw, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"{text!r} is not a duration (like 90s, 30m, 1h, 7d)") from None
    if value <= 0:
        raise ConfigError(f"a duration must be positive (got {text!r})")
    return value


def _keys(args: argparse.Namespace) -> int:
    from tickgate.auth import rotate

    kid = rotate(args.jwt_keys, args.alg, duration(args.grace), args.public)
    print(f"new signing key {kid} in {args.jwt_keys}", flush=True)
    return 0


def _token(args: argparse.Namespace) -> int:
    from tickgate.auth import KeyRing, issue

    if (args.jwt_keys is None) == (args.jwt_secret is None):
        raise ConfigError("give one of --jwt-keys or --jwt-secret")
    keys = KeyRing.from_secret(args.jwt_secret) if args.jwt_secret else KeyRing.from_file(args.jwt_keys)
    symbols = [p.strip() for p in args.symbols.split(",") if p.strip()] if args.symbols else None
    print(
        issue(
            keys, args.sub, duration(args.ttl), symbols=symbols, audience=args.audience, issuer=args.issuer
        ),
        flush=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tickgate.auth import EntitlementError, KeyError_

    try:
        if args.command == "keys":
            return _keys(args)
        if args.command == "token":
            return _token(args)
        if args.command == "serve":
            flags = {
                "host": args.host,
                "port": args.port,
                "workers": _workers(args.workers),
                "upstream_provider": args.upstream_provider,
                "upstream_url": args.upstream_url,
                "upstream_token": args.upstream_token,
                "backup_provider": args.backup_provider,
                "backup_url": args.backup_url,
                "backup_token": args.backup_token,
                "log_level": args.log_level,
                "redis_url": args.redis_url,
                "auth": args.auth,
                "jwt_keys": args.jwt_keys,
                "jwt_secret": args.jwt_secret,
                "tls_cert": args.tls_cert,
                "tls_key": args.tls_key,
                "audit_dir": args.audit_dir,
            }
            config = load_config(args.config, overrides=flags)  # fail fast, before the loop starts
            _configure_logging(config.log_level)
            _run(lambda stop: _serve(config, stop))
        else:
            level = str(args.log_level).upper()
            if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ConfigError(
                    f"--log-level must be DEBUG, INFO, WARNING or ERROR (got {args.log_level!r})"
                )
            _configure_logging(level)
            _run(lambda stop: _simulate(args, stop))
    except (ConfigError, KeyError_, EntitlementError) as e:
        print(f"tickgate: configuration error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"tickgate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
