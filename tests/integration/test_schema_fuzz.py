"""A bounded schemathesis run against the whole HTTP application (intake, health, the
auditors' endpoints), in process: requests generated from the served OpenAPI schema, a
fixed seed (derandomised) and a small number of examples per operation, positive and
negative (data the schema forbids). Every answer must be documented for its operation,
conform to its schema, and never be a server error; an intake operation without its key
must answer 401."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from factories import bearer, intake_key, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from audit_sampling.context import AuditContext
from audit_sampling.http import audit_router
from integrity.http import create_app

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,
]
BOUNDED = settings(
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def bounded_run(
    operation: Any, mode: GenerationMode, headers: dict[str, str], seen: dict[str, set[int]]
) -> Any:
    """A Hypothesis test of one operation: every generated case sent and checked."""
    label = f"{operation.method.upper()} {operation.path}"

    @BOUNDED
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        seen.setdefault(label, set()).add(response.status_code)

    return run


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_documented_and_no_server_error(
    tmp_path: Path, mode: GenerationMode
) -> None:
    app = make_app(tmp_path / "home")
    try:
        api = create_app(app, seal_every_s=None, routers=[audit_router(app.get(AuditContext))])
        headers = bearer(intake_key(app, "fuzz-gw"))
        schema = schemathesis.openapi.from_asgi("/openapi.json", api)
        operations = [result.ok() for result in schema.get_all_operations()]
        labels = {f"{op.method.upper()} {op.path}" for op in operations}
        assert {"POST /v1/ratings", "POST /v1/ratings:batch", "GET /healthz"} <= labels
        seen: dict[str, set[int]] = {}
        for operation in operations:
            run = bounded_run(operation, mode, headers, seen)
            try:
                run()
            except Unsatisfiable:  # nothing the schema forbids (no body, no parameters)
                assert mode is GenerationMode.NEGATIVE
        if mode is GenerationMode.POSITIVE:  # the run reached the hook, not only its refusals
            assert 200 in seen["POST /v1/ratings"] and 200 in seen["POST /v1/ratings:batch"]
        assert 422 in seen["POST /v1/ratings"]
    finally:
        app.close()
