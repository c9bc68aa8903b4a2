"""Property-based API contract test: generated requests never get a 5xx or a response that
violates our own OpenAPI schema."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

from sparseretr.service import Settings, create_app  # noqa: E402
from test_service_fakes import FakeEngine  # noqa: E402

app = create_app(
    Settings(_env_file=None, api_key="secret", load_in_background=False),  # type: ignore[call-arg]
    FakeEngine(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_contract(case):
    case.call_and_validate()
