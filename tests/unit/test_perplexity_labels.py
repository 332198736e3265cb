"""Each perplexity says which text, windows and token count it was measured on."""

from __future__ import annotations

from cogumi.compress.report import size_rows, to_markdown
from cogumi.evaluate.report import render_markdown


def test_benchmark_perplexity_names_its_text_window_stride_and_tokens():
    results = {"timestamp": "t", "model": {"model": "m", "backend": "transformers"}, "method": {},
               "perplexity": {"perplexity": 24.4, "tokens": 900, "window": 256, "stride": 128, "method": "HF"}}
    md = render_markdown(results)
    assert "| perplexity | 24.40 | 900 |" in md
    assert "heldout.txt unless set), sliding window 256 / stride 128, 900 tokens scored" in md


def test_compression_perplexity_names_its_held_out_set_and_tokens():
    stages = {"baseline": {"bytes": 100, "params": 50, "ppl": 33.0, "eval_tokens": 2048, "eval_source": "built-in",
                           "artifacts": [{"artifact": "in", "bytes": 100, "ppl": 33.0}]}}
    rows = size_rows(stages)
    assert rows[0]["ppl_data"] == "the built-in compression held-out set, 2048 tokens in non-overlapping windows"
    md = to_markdown(rows, "T", [])
    assert "- perplexity: the built-in compression held-out set, 2048 tokens" in md and "benchmark stage" in md
