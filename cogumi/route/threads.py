"""Torch thread policy for the router's small inputs.

The router runs a 13K-parameter MLP and embeds one or two sentences per request. For
inputs this small, torch's intra-op threads buy nothing and, on a busy machine, spin
against each other: measured here under load, MLP training took 74 s on 2 threads vs
2.7 s on one, and a routing decision 770 ms vs 24 ms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed torch work on one intra-op thread, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
