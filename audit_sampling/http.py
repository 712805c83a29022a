"""Auditor endpoints: ``/v1/audit/...`` with ``Authorization: Bearer <token>``.

The token is the auditor's personal token (the core's credentials: it expires and can
be revoked). An auditor sees only the batches assigned to them: ``401`` without a
live token, ``403`` for someone else's batch or a person without the auditor role. A pull over
HTTP is the same export as ``integrity audit pull --format jsonl`` and is logged on
the ledger the same way (``via: http``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from audit_sampling.batches import list_batches, pull
from audit_sampling.config import AUDITOR_ROLE
from audit_sampling.context import AuditContext
from audit_sampling.findings import record
from integrity.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Unauthenticated,
)
from integrity.http import ErrorOut, bearer, unauthorized
from integrity.people import Person

#: What every auditor endpoint may answer besides 200 (documented in the OpenAPI schema).
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorOut,
        "description": "No or unknown token",
        "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    },
    403: {"model": ErrorOut, "description": "Not an auditor, or not your batch"},
    404: {"model": ErrorOut, "description": "No such batch"},
    409: {"model": ErrorOut, "description": "The batch's state does not allow it"},
    422: {"model": ErrorOut, "description": "Invalid request; item-level errors; nothing recorded"},
    503: {"model": ErrorOut, "description": "The ledger is unavailable"},
}


def audit_router(ctx: AuditContext) -> APIRouter:
    """The router over one :class:`AuditContext` (include it with ``create_app(routers=...)``)."""
    router = APIRouter(prefix="/v1/audit", tags=["audit"])

    def guarded(fn: Any, authorization: str | None) -> JSONResponse:
        try:
            person = bearer(ctx.signing(), authorization)
            if not person.has(AUDITOR_ROLE):
                raise PermissionDenied(f"{person.person_id!r} does not hold the auditor role")
            return fn(person)
        except Unauthenticated as err:
            return unauthorized(err)
        except PermissionDenied as err:
            return JSONResponse(status_code=403, content={"detail": str(err)})
        except NotFound as err:
            return JSONResponse(status_code=404, content={"detail": str(err)})
        except InvalidInput as err:
            return JSONResponse(
                status_code=422,
                content={"detail": err.summary(), "errors": [e.as_dict() for e in err.errors]},
            )
        except (Conflict, PolicyViolation) as err:
            return JSONResponse(status_code=409, content={"detail": str(err)})

    @router.get("/batches", summary="The calling auditor's batches", responses=_ERRORS)
    def my_batches(authorization: str | None = Header(default=None)) -> JSONResponse:
        def run(person: Person) -> JSONResponse:
            rows = [b.as_dict() for b in list_batches(ctx, auditor_id=person.person_id)]
            return JSONResponse(content={"batches": rows})

        return guarded(run, authorization)

    @router.get(
        "/batches/{batch_id}",
        summary="Pull one of your batches: pseudonymised rows and the manifest (logged)",
        responses=_ERRORS,
    )
    def get_batch(batch_id: int, authorization: str | None = Header(default=None)) -> JSONResponse:
        def run(person: Person) -> JSONResponse:
            p = pull(ctx, batch_id, person.person_id, "jsonl", file_name=None, via="http")
            return JSONResponse(content={"manifest": p.manifest, "items": p.rows})

        return guarded(run, authorization)

    @router.post(
        "/batches/{batch_id}/findings",
        summary="Record findings for one of your batches: [{rating_id, code, note}]",
        responses=_ERRORS,
    )
    def post_findings(
        batch_id: int,
        body: Any = Body(...),  # noqa: B008 - FastAPI's idiom
        authorization: str | None = Header(default=None),
    ) -> JSONResponse:
        def run(person: Person) -> JSONResponse:
            if not isinstance(body, list) or not all(isinstance(x, dict) for x in body):
                return JSONResponse(
                    status_code=422,
                    content={"detail": "expected a JSON array of {rating_id, code, note}"},
                )
            entries = [
                (f"item {i}", {k: (None if v is None else str(v)) for k, v in x.items()})
                for i, x in enumerate(body, 1)
            ]
            res = record(ctx, batch_id, person.person_id, entries)
            return JSONResponse(content=res.as_dict())

        return guarded(run, authorization)

    return router
