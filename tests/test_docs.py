"""The documented error catalogue and the code's stay the same list."""

from __future__ import annotations

import re
from pathlib import Path

from tickgate.errors import CATALOGUE, ErrorCode

DOC = Path(__file__).parent.parent / "docs" / "protocol.md"


def test_every_error_code_is_documented_once() -> None:
    text = DOC.read_text()
    table = text[text.index("### Error codes") :]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert sorted(documented) == sorted(code.value for code in ErrorCode)
    assert set(CATALOGUE) == set(ErrorCode)
