"""The error catalogue is one list: the core's enum, the Python enum, the docs table and the
codes the core's exceptions carry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tickgate import FeedProcessor, normalize_symbol, normalize_type
from tickgate._core import Dispatcher, error_catalogue
from tickgate.errors import CATALOGUE, DecodeError, ErrorCode, InvalidModeError

DOC = Path(__file__).parent.parent / "docs" / "protocol.md"


def test_docs_table_lists_the_core_catalogue_in_order() -> None:
    text = DOC.read_text()
    table = text[text.index("### Error codes") :]
    table = table[: table.index("\n## ")]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert documented == [code for code, _ in error_catalogue()]
    assert [c.value for c in ErrorCode] == documented
    assert list(CATALOGUE) == list(ErrorCode)


def test_docs_list_every_stale_reason() -> None:
    from tickgate.status import StaleReason

    text = DOC.read_text()
    section = text[text.index("## Channel status") :]
    section = section[: section.index("\n## ")]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)
    assert documented == [r.value for r in StaleReason]


@pytest.mark.parametrize(
    "raise_it",
    [
        lambda: FeedProcessor("itick").ingest(b"{nope"),
        lambda: FeedProcessor("itick").ingest(b'{"code":1,"data":{"s":"AAPL","ld":1,"type":"tick"}}'),
        lambda: FeedProcessor("itick", max_frame_bytes=8).ingest(b"{" * 9),
        lambda: FeedProcessor("nope"),
        lambda: normalize_symbol("no region"),
        lambda: normalize_type("trades"),
        lambda: Dispatcher(
            soft_cap_bytes=1,
            tick_cap=1,
            lag_deadline_ms=1,
            wheel_tick_ms=1,
            min_interval_ms=9,
            max_interval_ms=1,
        ),
    ],
)
def test_core_exceptions_carry_catalogue_codes(raise_it) -> None:
    with pytest.raises((DecodeError, InvalidModeError)) as info:
        raise_it()
    assert ErrorCode(info.value.code) in CATALOGUE
