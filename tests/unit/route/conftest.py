"""Fixtures of the router tests: a hashing stand-in embedder and the real packaged embedder."""

from __future__ import annotations

import pytest

from tests.unit.route.support import HashEmbedder


@pytest.fixture(scope="session")
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def real_embedder():
    """The packaged all-MiniLM-L6-v2 (loaded once per test session)."""
    from cogumi.route.embedding import Embedder

    return Embedder()
