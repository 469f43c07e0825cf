"""Schemathesis against the live server's own OpenAPI document: no input may cause a 5xx.

Positive cases (valid per the schema) and negative ones (violating it) are generated for every
operation; responses must not be server errors, must use documented status codes and content
types, and must match the documented response schemas. The example budget is small and the
database off so the file stays fast and deterministic on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from test_api import ServerThread

from model.config import Settings
from serve.api.app import create_app

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
EXAMPLES = {"POST": 40, "GET": 5}


@pytest.fixture(scope="module")
def live_url(tiny_classifier) -> Iterator[str]:
    with ServerThread(create_app(Settings(), classifier=tiny_classifier)) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def api_schema(live_url: str):
    return schemathesis.openapi.from_url(f"{live_url}/openapi.json")


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, live_url: str, mode: GenerationMode) -> None:
    operations = _operations(api_schema)
    seen: dict[str, set[int]] = {}
    assert {op.path for op in operations} >= {"/v1/score", "/v1/calls", "/v1/model", "/healthz", "/readyz"}
    with requests.Session() as session:
        for op in operations:
            if mode is GenerationMode.NEGATIVE and not op.body:
                continue  # nothing to violate: GETs without parameters

            @settings(
                max_examples=EXAMPLES.get(op.method.upper(), 5),
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case) -> None:
                response = case.call_and_validate(base_url=live_url, session=session, checks=CHECKS, timeout=30)
                seen.setdefault(f"{case.operation.method.upper()} {case.operation.path}", set()).add(
                    response.status_code
                )

            check()
    # Guard against a vacuous run: the fuzzer must have reached the model, or been refused.
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen["POST /v1/score"] and 200 in seen["POST /v1/calls"], seen
    else:
        assert any(400 <= code < 500 for code in seen["POST /v1/score"]), seen


def test_fuzz_module_uses_tiny_model(live_url: str, tiny_artifact: Path) -> None:
    """Guards the fixture wiring: the fuzzed server runs the tiny test model, not the shipped one."""
    assert requests.get(f"{live_url}/v1/model", timeout=10).json()["name"] == "tiny-test"
