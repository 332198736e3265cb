"""Batch prices, batch billing in the curate report, and the one JSONL reader's errors."""

from __future__ import annotations

import pytest

from cogumi.curate.report import CurationStats, render_markdown
from cogumi.curate.rows import new_row
from cogumi.endpoints.config import BatchConfig
from cogumi.jsonl import MalformedJsonl, read_jsonl


def test_batch_prices_follow_the_discount_unless_given():
    assert BatchConfig().prices(2.0, 8.0) == (1.0, 4.0)
    assert BatchConfig(discount=0.25, price_out_per_mtok=5.0).prices(2.0, 8.0) == (1.5, 5.0)


def test_report_shows_batch_cost_next_to_the_online_equivalent():
    stats = CurationStats({"t": (2.0, 10.0)})
    batch = new_row(teacher="t", prompt_tokens=100, completion_tokens=50, cost_usd=(100 * 1 + 50 * 5) / 1e6,
                    cached=False, attempts=1, batch_id="batch_1")
    online = new_row(teacher="t", prompt_tokens=10, completion_tokens=5, cost_usd=(10 * 2 + 5 * 10) / 1e6,
                     cached=False, attempts=1)
    stats.add([batch, online])
    summary = stats.summary()
    cost = summary["cost"]["t"]
    assert cost["calls"] == 2 and cost["batch_calls"] == 1
    assert cost["usd"] == pytest.approx((350 + 70) / 1e6)
    assert cost["online_equivalent_usd"] == pytest.approx((100 * 2 + 50 * 10 + 70) / 1e6)
    assert summary["cost_total_online_equivalent_usd"] == pytest.approx(cost["online_equivalent_usd"])
    assert "online-equivalent USD" in render_markdown(summary, {})


def test_a_malformed_jsonl_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2\n')
    with pytest.raises(MalformedJsonl, match=r"line 3 of .*rows.jsonl is not JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n[2]\n')
    assert read_jsonl(str(path)) == [{"a": 1}, [2]]
