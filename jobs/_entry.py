"""Shared entry for ``jobs/<phase>.py``: each job is the CLI command of the same name.

``python jobs/generate.py --config configs/local.yaml "hi"`` is exactly
``cogumi generate --config configs/local.yaml "hi"``, so ``ray job submit
--working-dir . -- python jobs/<phase>.py ...`` runs what the CLI runs.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_command(name: str) -> None:
    """Run ``cogumi <name> <argv...>`` in this process."""
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:  # ray job --working-dir without an installed package
        sys.path.insert(0, str(root))
    from cogumi.cli import app

    app(args=[name, *sys.argv[1:]], prog_name=f"jobs/{name}.py")
