"""Schemathesis over the API's own OpenAPI schema (in-process, a fake model): no case gets a 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.unit.serve.support import TEST_KEY, fake_app

schemathesis = pytest.importorskip("schemathesis")

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
schema = schemathesis.openapi.from_asgi("/openapi.json", fake_app(rate_limit={"requests_per_minute": 10**6,
                                                                               "burst": 10**6}))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_openapi_fuzz_never_5xx(case):
    for headers in (AUTH, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.path, case.body, response.text[:300])
