"""``cogumi.raycluster.connect``: the one way into Ray never re-initialises a process's Ray."""

from __future__ import annotations

import pytest

from cogumi.raycluster import connect

pytestmark = pytest.mark.integration


def test_connect_keeps_the_ray_this_process_already_has(ray_local):
    node = ray_local.get_runtime_context().get_node_id()
    # an address nothing listens on: joining it would fail, so False proves nothing was attempted
    assert connect("127.0.0.1:1", log_to_driver=False) is False
    assert connect() is False
    assert ray_local.get_runtime_context().get_node_id() == node
    assert ray_local.get(ray_local.remote(lambda: 41 + 1).remote()) == 42
