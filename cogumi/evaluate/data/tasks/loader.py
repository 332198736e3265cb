"""Loads Cogumi's bundled lm-eval task files (JSONL next to this file) as a DatasetDict.

Referenced from the task YAMLs as ``custom_dataset: !function loader.load`` so the
files are found wherever the package is installed, without network access.
"""

from __future__ import annotations

import json
from pathlib import Path


def load(file: str, split: str = "test", **_metadata):
    """Read ``file`` (a JSONL beside this module) into ``DatasetDict({split: ...})``."""
    import datasets

    path = Path(__file__).with_name(file)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})
