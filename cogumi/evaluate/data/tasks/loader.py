"""Loads Cogumi's bundled lm-eval task files (JSONL next to this file) as a DatasetDict.

Referenced from the task YAMLs as ``custom_dataset: !function loader.load`` so the
files are found wherever the package is installed, without network access.
"""

from __future__ import annotations

from pathlib import Path

from cogumi.jsonl import read_jsonl


def load(file: str, split: str = "test", only_split: str | None = None, **_metadata):
    """Read ``file`` (a JSONL relative to this folder) into ``DatasetDict({split: ...})``.

    ``only_split`` keeps the rows whose ``split`` field has that value.
    """
    import datasets

    path = (Path(__file__).parent / file).resolve()
    rows = read_jsonl(path)
    if only_split:
        rows = [r for r in rows if r.get("split") == only_split]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})
