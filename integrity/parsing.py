"""Parse an intake object (docs/reference.md, Ratings) into a pseudonymised :class:`Rating`.

Structure is checked by a pydantic model (also the HTTP schema); the rubric
(dimensions, scale) is checked against the active rule set. Every problem is
reported as a :class:`FieldError`; nothing is written for a rating that fails.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from integrity.errors import FieldError, InvalidInput
from integrity.model import VERBAL_LEVELS, Rating, Rubric
from integrity.pseudonym import Pseudonymiser

COMPOSITE_DECIMALS = 12

Channel = Literal["kiosk", "qr", "app", "sms", "web", "phone"]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail at write time.
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    return value


def _text(lo: int, hi: int) -> Any:
    return Annotated[StrictStr, Field(min_length=lo, max_length=hi), AfterValidator(_no_nul)]


class RatingIn(BaseModel):
    """A rating as intake services send it (docs/reference.md, Ratings)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    ticket_id: _text(1, 128)  # type: ignore[valid-type]
    window_id: _text(1, 64)  # type: ignore[valid-type]
    staff_id: _text(1, 64) | None = None  # type: ignore[valid-type]
    service_type: _text(1, 64) = "general"  # type: ignore[valid-type]
    channel: Channel = "qr"
    served_at: StrictStr | None = Field(default=None, description="RFC 3339 with offset")
    submitted_at: StrictStr | None = Field(default=None, description="RFC 3339 with offset")
    scores: dict[StrictStr, StrictInt | StrictStr] = Field(
        description="dimension -> integer on the rubric's scale (or a verbal level on 1-5)"
    )
    comment: Annotated[StrictStr, Field(max_length=2000), AfterValidator(_no_nul)] | None = None
    ip: _text(2, 64)  # type: ignore[valid-type]
    device_id: _text(1, 128)  # type: ignore[valid-type]


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(rating)"


def _pydantic_errors(err: ValidationError) -> list[FieldError]:
    out = []
    scores_seen: set[str] = set()
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p not in ("str", "int", "StrictStr", "StrictInt"))
        field = _loc(loc)
        if e["type"] == "extra_forbidden":
            out.append(FieldError(field, "unknown field"))
        elif e["type"] == "missing":
            out.append(FieldError(field, "required field is missing"))
        elif len(loc) == 2 and loc[0] == "scores":
            # A score is an integer or a verbal level: the union's two refusals ("not an
            # integer", "not a string") would contradict each other; say it once.
            if field not in scores_seen:
                scores_seen.add(field)
                out.append(
                    FieldError(
                        field,
                        f"not an integer score: {e.get('input')!r} (expected an integer on "
                        "the rubric's scale, or a verbal level such as 'satisfied')",
                    )
                )
        else:
            out.append(FieldError(field, e["msg"]))
    return out


# RFC 3339 §5.6 date-time ('T' or, per its note, a space; 'T' and 'Z' in either case).
# Python's fromisoformat alone also takes ISO 8601 forms RFC 3339 does not (basic
# format, week dates, times without seconds), so the shape is checked first.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<offset>Z|[+-]\d{2}:\d{2})?", re.ASCII
)


# Times far from now are nonsense for a rating, and at the ends of the calendar the day
# and time-zone arithmetic of rate limits and reports overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 with an explicit offset ('Z' or ±hh:mm) → aware UTC datetime."""
    text = value.strip().upper()
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError("expected a date and a time like 2026-10-01T09:30:00+08:00")
    if m["offset"] is None:
        raise ValueError("timestamp needs an offset, e.g. 2026-10-01T09:30:00+08:00")
    try:
        when = datetime.fromisoformat(text).astimezone(UTC)
    except OverflowError:
        when = EARLIEST - timedelta(days=1)  # beyond either end of the calendar
    if not EARLIEST <= when < LATEST:
        raise ValueError(f"out of range: must be from {EARLIEST.year} to {LATEST.year - 1}")
    return when


def _scores(
    raw: Mapping[str, int | str], rubric: Rubric, errors: list[FieldError]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for dim, value in raw.items():
        if dim not in rubric.weights:
            errors.append(
                FieldError(
                    f"scores.{dim}", f"unknown dimension; expected {', '.join(rubric.dimensions)}"
                )
            )
            continue
        if isinstance(value, str):
            level = VERBAL_LEVELS.get(value.strip().lower())
            if level is None or (rubric.scale_min, rubric.scale_max) != (1, 5):
                errors.append(FieldError(f"scores.{dim}", f"not an integer score: {value!r}"))
                continue
            value = level
        if not rubric.scale_min <= value <= rubric.scale_max:
            errors.append(
                FieldError(
                    f"scores.{dim}",
                    f"{value} is outside the scale {rubric.scale_min}..{rubric.scale_max}",
                )
            )
            continue
        out[dim] = value
    for dim in rubric.dimensions:
        if dim not in raw:
            errors.append(FieldError(f"scores.{dim}", "required dimension is missing"))
    return out


def _content(
    fields: Mapping[str, Any],
    rubric: Rubric,
    pseudonymiser: Pseudonymiser,
    errors: list[FieldError],
) -> tuple[datetime | None, datetime | None, dict[str, int], str, str]:
    """Check times, scores and address of fields that passed the schema (absent: skipped).

    Returns ``(served_at, submitted_at, scores, ip_hash, prefix_hash)``; appends to ``errors``.
    """
    times: dict[str, datetime | None] = {"served_at": None, "submitted_at": None}
    for name in times:
        text = fields.get(name)
        if text is None:
            continue
        try:
            times[name] = parse_timestamp(text)
        except ValueError as err:
            errors.append(FieldError(name, f"not an RFC 3339 timestamp with offset: {err}"))
    raw_scores = fields.get("scores")
    scores = _scores(raw_scores, rubric, errors) if raw_scores is not None else {}
    ip_hash = prefix_hash = ""
    if fields.get("ip") is not None:
        try:
            ip_hash, prefix_hash = pseudonymiser.address(fields["ip"])
        except ValueError:
            errors.append(FieldError("ip", "not an IPv4 or IPv6 address"))
    return times["served_at"], times["submitted_at"], scores, ip_hash, prefix_hash


_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a rating's content (hex)."""
    # json.dumps with these options would build a new encoder on every call
    blob = _FINGERPRINT_JSON.encode(content)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_rating(
    obj: Any,
    *,
    rubric: Rubric,
    pseudonymiser: Pseudonymiser,
    received_at: datetime,
    client_id: str | None = None,
) -> Rating:
    """Validate ``obj`` (a decoded JSON object) and pseudonymise it.

    ``received_at`` (aware) is the time of receipt; it is ``submitted_at`` when the
    rating carries none. ``client_id`` names the intake client that sent it (recorded,
    not part of the content's fingerprint). Raises :class:`InvalidInput` with every
    field error found.
    """
    if not isinstance(obj, Mapping):
        raise InvalidInput([FieldError("(rating)", "expected a JSON object")])
    errors: list[FieldError] = []
    try:
        model = RatingIn.model_validate(obj)
    except ValidationError as err:
        errors.extend(_pydantic_errors(err))
        # Check the fields the schema did not refuse too, so one reply lists every problem.
        flagged = {e.field for e in errors}
        raw = {k: v for k, v in obj.items() if k not in flagged}
        if isinstance(raw.get("scores"), Mapping):
            raw["scores"] = {d: v for d, v in raw["scores"].items() if f"scores.{d}" not in flagged}
        more: list[FieldError] = []
        _content(raw, rubric, pseudonymiser, more)
        errors.extend(e for e in more if e.field not in flagged)
        raise InvalidInput(errors) from None

    checked = {
        "served_at": model.served_at,
        "submitted_at": model.submitted_at,
        "scores": model.scores,
        "ip": model.ip,
    }
    served_at, submitted_at, scores, ip_hash, prefix_hash = _content(
        checked, rubric, pseudonymiser, errors
    )
    if errors:
        raise InvalidInput(errors)

    device_hash = pseudonymiser.device(model.device_id)
    content = {
        "ticket_id": model.ticket_id,
        "window_id": model.window_id,
        "staff_id": model.staff_id,
        "service_type": model.service_type,
        "channel": model.channel,
        "served_at": served_at.isoformat() if served_at else None,
        "submitted_at": submitted_at.isoformat() if submitted_at else None,
        "scores": scores,
        "comment": model.comment,
        "ip": ip_hash,
        "device": device_hash,
    }
    received = received_at.astimezone(UTC)
    return Rating(
        ticket_id=model.ticket_id,
        window_id=model.window_id,
        staff_id=model.staff_id,
        service_type=model.service_type,
        channel=model.channel,
        served_at=served_at,
        submitted_at=submitted_at or received,
        submitted_at_given=submitted_at is not None,
        received_at=received,
        scores=scores,
        # Rounded: weights like 0.3 are not exact in binary, and a mean that is exactly
        # 3.0 in decimals came out 2.9999999999999996, a low score (a low score is < 3.0).
        composite=round(rubric.composite(scores), COMPOSITE_DECIMALS),
        comment=model.comment,
        ip_hash=ip_hash,
        prefix_hash=prefix_hash,
        device_hash=device_hash,
        fingerprint=fingerprint(content),
        client_id=client_id,
    )
