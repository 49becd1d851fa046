"""Prints tickgate-core / peer time ratios from a pytest-benchmark JSON file.

python benches/ratios.py .benchmarks/core.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as fh:
        data = json.load(fh)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for b in data["benchmarks"]:
        impl = b.get("extra_info", {}).get("impl", b["name"])
        groups[b["group"]][impl] = b["stats"]["median"]
    print(f"{'group':<34} {'impl':<18} {'median':>12} {'ratio':>8}")
    for group, impls in sorted(groups.items()):
        core = impls.get("tickgate-core")
        for impl, median in sorted(impls.items()):
            ratio = f"{core / median:.2f}x" if core and impl != "tickgate-core" else ""
            print(f"{group:<34} {impl:<18} {median * 1e6:>10.2f}us {ratio:>8}")
    print("ratio = tickgate-core time / peer time (lower is better for tickgate)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/core.json")
