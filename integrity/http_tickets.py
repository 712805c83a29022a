"""HTTP endpoints for service records and receipts (docs/reference.md, HTTP).

- ``POST /v1/tickets``: the queue system's service records, one object or an array,
  authenticated and scoped like intake (an intake client's key; a record for a window
  outside the client's scope is 403, in an array an error result for that element).
  Idempotent: the same record again answers ``known`` and writes nothing; a different
  record for a known ticket is refused with a field error. One unit of work per
  request: everything that parses is written, with the re-judging it causes, or
  nothing (503; a retry is safe).
- ``GET /v1/receipts/{code}``: what a rater's receipt says (no key: the code is the
  capability). A bad or unknown code is 404 with the same few words either way; lookups
  are counted per address (IPv6: per /64) through the rate limiter: 429 beyond the
  rule set's ``[receipts] lookups_per_minute``; 503 with ``Retry-After`` while the
  limiter does not answer (fails closed, like intake's ``limiter_unavailable``).

:func:`add_endpoints` adds both to the application :func:`integrity.http.create_app`
builds, with its intake-client dependency.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from integrity.app import App
from integrity.clients import IntakeClients
from integrity.errors import (
    BackendUnavailable,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from integrity.http import (
    _UNAUTHORIZED,
    _UNAVAILABLE,
    ErrorOut,
    FieldErrorOut,
    _error,
    _errors,
    _raw_body,
    decode_json,
)
from integrity.model import IntakeClient
from integrity.receipts import LOOKUPS_UNAVAILABLE, NO_SUCH_RECEIPT, ReceiptService
from integrity.tickets import ServiceRecords, TicketIn, TicketResult

log = logging.getLogger("integrity.http")

#: Receipts are capabilities: no cache or referrer should keep one.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
RECEIPTS_PATH = "/v1/receipts/"


class RedactReceipts(logging.Filter):
    """For ``serve``'s access log: a receipt lookup is logged as ``/v1/receipts/...``,
    never with its code (whoever holds a code can look the rating up)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 5
            and isinstance(args[2], str)
            and args[2].startswith(RECEIPTS_PATH)
        ):
            record.args = (args[0], args[1], RECEIPTS_PATH + "...", args[3], args[4])
        return True


class TicketOut(BaseModel):
    ticket_id: str
    status: Literal["recorded", "known"] = Field(
        description="recorded: new; known: the same record was there already (nothing written)"
    )


class TicketItemOut(TicketOut):
    index: int


class TicketErrorOut(BaseModel):
    index: int
    status: None = Field(description="null: this record was not written")
    detail: str
    errors: list[FieldErrorOut]


class TicketsOut(BaseModel):
    results: list[TicketItemOut | TicketErrorOut] = Field(
        description="one per element, in order: recorded / known, or field errors"
    )


class FollowUpOut(BaseModel):
    stage: str = Field(description="where the follow-up of a low score stands, in plain words")
    reply: str | None = Field(description="the reply the service window wrote, once it has")


class ReceiptOut(BaseModel):
    receipt: str
    state: Literal["counts", "waiting", "not_counted"]
    counts: bool
    status: Literal["accepted", "held", "rejected", "voided"]
    summary: str = Field(description="what the status means, in plain words")
    reasons: list[str] = Field(description="why it waits or does not count, in plain words")
    rated_on: str = Field(description="the local date the rating was given (YYYY-MM-DD)")
    follow_up: FollowUpOut | None = Field(
        description="a low score's follow-up, when the follow-up loop has one"
    )


def _record_schema() -> dict[str, Any]:
    one = TicketIn.model_json_schema()
    one["properties"]["served_at"] = {
        **one["properties"]["served_at"],
        "format": "date-time",
    }
    return {"anyOf": [one, {"type": "array", "items": one}]}


def add_endpoints(
    api: FastAPI, app: App, intake_client: Callable[..., Any], clients: IntakeClients
) -> None:
    """``POST /v1/tickets`` and ``GET /v1/receipts/{code}`` on ``api``."""
    max_items = app.core.http.max_batch_items

    @api.post(
        "/v1/tickets",
        summary="Record service records from the queue system (one, or an array)",
        response_model=None,
        responses={
            200: {
                "model": TicketOut | TicketsOut,
                "description": "One record: recorded or known. An array: one result per "
                "element (errors, and windows outside the client's scope, as field errors)",
            },
            401: _UNAUTHORIZED,
            403: _error("The client may not send records for this window; nothing written"),
            413: _error(
                f"The body is larger than [http] max_body_bytes, or holds more than "
                f"{max_items} records; nothing written"
            ),
            422: _error(
                "The body is not JSON, or the record does not parse or contradicts the "
                "known record of its ticket; nothing written"
            ),
            503: _UNAVAILABLE,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _record_schema()}},
            }
        },
    )
    def post_tickets(
        client: IntakeClient = Depends(intake_client),  # noqa: B008 - FastAPI's idiom
        body: bytes = Depends(_raw_body),
    ) -> JSONResponse:
        try:
            doc = decode_json(body)
        except InvalidInput as err:
            return JSONResponse(status_code=422, content=_errors(err))
        single = not isinstance(doc, list)
        items: list[Any] = [doc] if single else doc
        if len(items) > max_items:
            return JSONResponse(
                status_code=413, content={"detail": f"at most {max_items} records per request"}
            )
        results: list[dict[str, Any] | None] = [None] * len(items)
        admitted: list[int] = []
        for i, obj in enumerate(items):
            window = obj.get("window_id") if isinstance(obj, dict) else None
            if isinstance(window, str):
                try:
                    clients.admit(client, window)
                except PermissionDenied as err:
                    if single:
                        return JSONResponse(status_code=403, content={"detail": str(err)})
                    results[i] = _refused(i, err)
                    continue
            admitted.append(i)
        written, _ = app.get(ServiceRecords).record(
            [items[i] for i in admitted], client_id=client.name
        )
        for res in written:
            index = admitted[res.index]
            results[index] = TicketResult(index, res.ticket_id, res.status, res.error).as_dict()
        if single:
            only = written[0]
            if only.error is not None:
                return JSONResponse(status_code=422, content=_errors(only.error))
            return JSONResponse(
                status_code=200, content={"ticket_id": only.ticket_id, "status": only.status}
            )
        return JSONResponse(status_code=200, content={"results": results})

    @api.get(
        "/v1/receipts/{code}",
        summary="What a rater's receipt says about their rating (no key needed)",
        response_model=None,
        responses={
            200: {"model": ReceiptOut, "description": "The rating's state in plain words"},
            404: {"model": ErrorOut, "description": "No such receipt (a bad or unknown code)"},
            429: {"model": ErrorOut, "description": "Too many lookups from this address"},
            503: {
                "model": ErrorOut,
                "description": "The ledger or the rate limiter is unavailable (lookups fail "
                "closed; see Retry-After)",
            },
        },
    )
    def get_receipt(code: str, request: Request) -> JSONResponse:
        receipts = app.get(ReceiptService)
        try:
            wait = receipts.allow(request.client.host if request.client else None)
        except BackendUnavailable as err:  # the limiter: refuse rather than count nothing
            log.warning("receipt lookup refused: %s", err)
            return JSONResponse(
                status_code=503,
                content={"detail": LOOKUPS_UNAVAILABLE},
                headers={**PRIVATE, "Retry-After": str(math.ceil(err.retry_after_s or 1))},
            )
        if wait is not None:
            return JSONResponse(
                status_code=429,
                content={"detail": "too many receipt lookups from this address; try later"},
                headers={**PRIVATE, "Retry-After": str(math.ceil(wait))},
            )
        try:
            receipt = receipts.look_up(code)
        except NotFound:
            return JSONResponse(
                status_code=404, content={"detail": NO_SUCH_RECEIPT}, headers=PRIVATE
            )
        return JSONResponse(status_code=200, content=receipt.as_dict(), headers=PRIVATE)


def _refused(index: int, err: PermissionDenied) -> dict[str, Any]:
    return TicketResult(
        index, error=InvalidInput([FieldError("window_id", str(err))], "service record")
    ).as_dict()
