"""``GET /v1/reports/page`` and ``GET /v1/reports/book``: the supervisor's page and
spreadsheet for signed-in people (``Authorization: Bearer <personal token>``).

The read policy decides (:mod:`integrity.access`, ``report_pages``: admin and
supervisor); staff are named only for readers who may read staff performance. ``401``
without a live token, ``403`` for a role that may not read the pages, ``422`` for a
period that does not parse, ``503`` when the ledger does not answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from integrity.auth import Credentials
from integrity.errors import InvalidInput, PermissionDenied, Unauthenticated
from integrity.http import ErrorOut, bearer, unauthorized
from publishing.month import Pages

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorOut,
        "description": "No token, or an unknown, expired or revoked one",
        "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    },
    403: {
        "model": ErrorOut,
        "description": "The person's roles may not read the pages (admin, supervisor)",
    },
    422: {"model": ErrorOut, "description": "The period, dates or hall do not parse or exist"},
    503: {"model": ErrorOut, "description": "The ledger is unavailable"},
}


def reports_router(pages: Pages, credentials: Credentials) -> APIRouter:
    """The router over one instance's :class:`Pages` (include it with ``create_app``)."""
    router = APIRouter(prefix="/v1/reports", tags=["reports"])

    def answer(
        kind: str,
        authorization: str | None,
        period: str | None,
        first: str | None,
        last: str | None,
        hall: str | None,
    ) -> Response:
        from publishing.book import render_book
        from publishing.page import render_page

        try:
            person = bearer(credentials, authorization)
            view = pages.view(person, pages.period(period, first, last), hall=hall)
        except Unauthenticated as err:
            return unauthorized(err)
        except PermissionDenied as err:
            return JSONResponse(status_code=403, content={"detail": str(err)})
        except InvalidInput as err:
            return JSONResponse(
                status_code=422,
                content={"detail": err.summary(), "errors": [e.as_dict() for e in err.errors]},
            )
        if kind == "book":
            name = f"report-{view.period.label}.xlsx".replace("..", "_")
            return Response(
                render_book(view),
                media_type=XLSX,
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return HTMLResponse(render_page(view))

    period_q = Query(
        default=None, description="2026-10, 2026-Q4 or 2026-W43 (default: the last whole month)"
    )
    from_q = Query(default=None, alias="from", description="First day YYYY-MM-DD, with to")
    to_q = Query(default=None, description="Last day YYYY-MM-DD, included")
    hall_q = Query(default=None, description="Only this hall's windows")

    @router.get(
        "/page",
        summary="The supervisor's page of a period: one self-contained HTML file",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}, "description": "The page"}, **_ERRORS},
    )
    def get_page(
        period: str | None = period_q,
        first: str | None = from_q,
        to: str | None = to_q,
        hall: str | None = hall_q,
        authorization: str | None = Header(default=None),
    ) -> Response:
        return answer("page", authorization, period, first, to, hall)

    @router.get(
        "/book",
        summary="The supervisor's spreadsheet of a period (.xlsx)",
        response_class=Response,
        responses={200: {"content": {XLSX: {}}, "description": "The workbook"}, **_ERRORS},
    )
    def get_book(
        period: str | None = period_q,
        first: str | None = from_q,
        to: str | None = to_q,
        hall: str | None = hall_q,
        authorization: str | None = Header(default=None),
    ) -> Response:
        return answer("book", authorization, period, first, to, hall)

    return router
