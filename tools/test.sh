#!/usr/bin/env bash
# The whole test suite from a fresh checkout: creates .venv, installs maturin and every
# dependency, builds the Rust extension, then runs `cargo test`, pytest (tests/ and a
# single-round pass over benches/ so the benchmarks stay runnable) and the linters
# (clippy with warnings as errors, ruff).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! command -v cargo >/dev/null; then
    echo "tools/test.sh: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip "maturin>=1.7,<2"
# Installs the runtime and test dependencies and builds the extension (release profile).
.venv/bin/python -m pip install -q -e ".[test,dev]"

cargo test --locked
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --all-targets --features python -- -D warnings
.venv/bin/ruff check python tests benches tools examples
.venv/bin/ruff format --check python tests benches tools examples

set +e
.venv/bin/python -m pytest tests benches -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "tools/test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
