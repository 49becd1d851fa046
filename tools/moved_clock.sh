#!/usr/bin/env bash
# The test suite with the wall clock moved: proves no test depends on today's date.
#
#   bash tools/moved_clock.sh +400d [pytest args...]
#
# Runs the core's unit tests and pytest (tests/ and benches/) under libfaketime at the given
# offset (Debian package faketime; installed here if missing). Monotonic time is left alone
# (FAKETIME_DONT_FAKE_MONOTONIC=1) so timers and deadlines work as usual. Needs the .venv that
# tools/test.sh builds. Left out of the moved clock: cargo itself (rustdoc hangs under
# libfaketime; the unit-test binary it builds runs faked instead), and Chromium, which
# tests/test_browser.py starts on the real clock (it does not run under libfaketime; the page
# then talks to a gateway whose clock is moved, as a browser with its own clock would).
# libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC fails time.sleep (EINVAL), and with it
# subprocess's timeouts: tests wait without them.
set -euo pipefail
cd "$(dirname "$0")/.."

offset=${1:?usage: tools/moved_clock.sh OFFSET (e.g. +400d) [pytest args...]}
shift
if ! command -v faketime >/dev/null; then
    apt-get install -y -q faketime >/dev/null
fi
export FAKETIME_DONT_FAKE_MONOTONIC=1

cargo test --locked --no-run -q
unit=$(cargo test --locked --no-run --message-format=json -q 2>/dev/null \
    | .venv/bin/python -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
for binary in $unit; do
    faketime -f "$offset" "$binary" -q
done

set +e
faketime -f "$offset" .venv/bin/python -m pytest tests benches -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "tools/moved_clock.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
