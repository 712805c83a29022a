"""Receipts: a code for the rater, and what it tells them about their rating.

Every decision carries ``receipt``: 20 characters of Crockford's base32 (digits and
capital letters without I, L, O, U; shown in four groups of five), made from the rating
id and a keyed MAC with the instance's secret key. Nothing is stored: the code is
derived again whenever it is needed, so an identical retry gets the same receipt, and a
code the engine did not make names no rating (a 60-bit MAC: one guess in 2^60 works).

Its 100 bits are the MAC ``tag`` (60 bits) and the rating id (40 bits) masked with a
pad derived from the tag (a deterministic authenticated encryption), so the code does
not show the rating id or how many ratings there are. Reading one back ignores case,
spaces and hyphens, and takes ``O`` for ``0`` and ``I``/``L`` for ``1``.

``GET /v1/receipts/{code}`` and ``integrity receipt CODE`` tell the rater, in plain
words and with no personal data (no staff, ticket, address, device or comment), whether
the rating counts, waits for a check, or why it does not count, and, for a low score,
where its follow-up stands (:class:`FollowUpView`, supplied by the follow-up loop and
wired by the composition root; without one, no stage is shown).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from integrity.catalogue import Reason
from integrity.errors import BackendUnavailable, ConfigError, NotFound
from integrity.model import Rubric, Status, StoredRating
from integrity.ports import Ledger, LimitCheck, Limiter, RatingQuery
from integrity.pseudonym import Pseudonymiser, hmac_sha256, normalise_ip

if TYPE_CHECKING:
    from integrity.app import App

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
_VALUE = {c: i for i, c in enumerate(ALPHABET)} | {"O": 0, "I": 1, "L": 1}
TAG_BITS = 60
ID_BITS = 40
CODE_CHARS = (TAG_BITS + ID_BITS) // 5  # 20
GROUP = 5
#: The largest rating id a receipt can carry (2^40 - 1, about 1.1 trillion).
MAX_RATING_ID = (1 << ID_BITS) - 1
#: What a lookup of a code that names no rating answers (says nothing more).
NO_SUCH_RECEIPT = "no such receipt"
#: What a lookup refused because the rate limiter did not answer is told (HTTP 503).
LOOKUPS_UNAVAILABLE = "receipt lookups are paused: the rate limiter did not answer; try later"
#: Seconds a lookup refused for want of the limiter is told to wait (``Retry-After``)
#: when the limiter does not say (its circuit breaker's cool-down when it does).
LOOKUPS_RETRY_S = 5.0


class ReceiptCodec:
    """Receipt codes for rating ids, keyed with the instance's secret key."""

    def __init__(self, secret: bytes) -> None:
        # a key of its own, so a receipt never reveals a pseudonym and vice versa
        self._key = hmac.new(secret, b"integrity receipts v1", hashlib.sha256).digest()

    def _tag(self, rating_id: int) -> int:
        mac = hmac_sha256(self._key, b"tag\x00" + rating_id.to_bytes(8, "big"))
        return int.from_bytes(mac[:8], "big") >> (64 - TAG_BITS)

    def _pad(self, tag: int) -> int:
        mac = hmac_sha256(self._key, b"pad\x00" + tag.to_bytes(8, "big"))
        return int.from_bytes(mac[:5], "big")

    def code(self, rating_id: int) -> str:
        """The receipt of ``rating_id`` (``XXXXX-XXXXX-XXXXX-XXXXX``)."""
        if not 0 < rating_id <= MAX_RATING_ID:
            raise ValueError(f"rating id {rating_id} is outside 1..{MAX_RATING_ID}")
        tag = self._tag(rating_id)
        value = (tag << ID_BITS) | (rating_id ^ self._pad(tag))
        chars = [ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS))]
        text = "".join(chars)
        return "-".join(text[i : i + GROUP] for i in range(0, CODE_CHARS, GROUP))

    def rating_id(self, code: str) -> int | None:
        """The rating a code names, or ``None`` for anything the engine did not make."""
        text = "".join(code.split()).replace("-", "").upper()
        if len(text) != CODE_CHARS or any(c not in _VALUE for c in text):
            return None
        value = 0
        for c in text:
            value = (value << 5) | _VALUE[c]
        tag = value >> ID_BITS
        rating_id = (value & MAX_RATING_ID) ^ self._pad(tag)
        if rating_id == 0 or not hmac.compare_digest(
            self._tag(rating_id).to_bytes(8, "big"), tag.to_bytes(8, "big")
        ):
            return None
        return rating_id


class FollowUpView(Protocol):
    """Where a low score's follow-up stands (the follow-up loop supplies it; the
    composition root wires it as ``app.factories[FollowUpView]``)."""

    def stage(self, rating_id: int) -> tuple[str, str | None] | None:
        """``(stage, reply)`` of the rating's follow-up: its stage in plain words and the
        reply the window wrote (``None`` until there is one); ``None``: no follow-up."""
        ...


# -- plain words ------------------------------------------------------------------------------

#: What each status means to the rater.
SUMMARY: Mapping[Status, str] = {
    Status.ACCEPTED: "Your rating counts toward the service window's results.",
    Status.HELD: "Your rating is waiting for a check and does not count yet; "
    "it will count if the check clears it.",
    Status.REJECTED: "Your rating does not count.",
    Status.VOIDED: "Your rating counted at first but was excluded later; it no longer counts.",
}
#: The short state a machine reads: counts, waiting, or not counted.
STATE: Mapping[Status, str] = {
    Status.ACCEPTED: "counts",
    Status.HELD: "waiting",
    Status.REJECTED: "not_counted",
    Status.VOIDED: "not_counted",
}

_SOURCE = "Too many ratings came from the same device or network in a short time."
_PATTERN = "Automated checks found an unusual pattern among ratings like this one."
_AUDIT = "An independent audit of ratings found that it cannot count."
_APPEAL_ONLY = None  # codes of appeal filings: never a rating's status, never shown

#: The catalogue's reasons reworded for the public: no staff, ticket, address, device or
#: detector detail. ``None``: a code that never explains a rating's status to its rater.
#: A mapping by status where the words depend on it.
PUBLIC_REASONS: Mapping[Reason, str | Mapping[Status, str] | None] = {
    Reason.DUPLICATE_TICKET: "Another rating had already been given for the same service; "
    "each service can be rated once.",
    Reason.LIMITER_UNAVAILABLE: "A routine check could not be made when the rating arrived, "
    "so a person will look at it.",
    Reason.RATE_LIMIT_DEVICE: _SOURCE,
    Reason.RATE_LIMIT_IP: _SOURCE,
    Reason.RATE_LIMIT_PREFIX: _SOURCE,
    Reason.RATE_LIMIT_DEVICE_WINDOW: _SOURCE,
    Reason.RATE_LIMIT_CLIENT: "The service that passed the rating on was sending unusually "
    "many ratings at the time.",
    Reason.KIOSK_WRONG_WINDOW: "It was given on a rating pad that belongs to another "
    "service window.",
    Reason.UNKNOWN_WINDOW: "The service window it names is not one we know.",
    Reason.STAFF_NOT_ON_ROSTER: "It names someone who was not on duty at that window that day.",
    Reason.SUBMITTED_BEFORE_SERVED: "It is dated before the service it rates had ended.",
    Reason.SUBMITTED_IN_FUTURE: "It is dated later than the time it arrived.",
    Reason.TOO_OLD: "It arrived long after the service it rates.",
    Reason.PERIOD_CLOSED: "The results for the month of the service had already been "
    "closed when it arrived.",
    Reason.UNKNOWN_TICKET: {
        Status.HELD: "The hall's queue system has not yet sent its record of this service; "
        "the rating counts once the record arrives and matches.",
        Status.REJECTED: "The hall's queue system never sent a record of this service.",
    },
    Reason.TICKET_MISMATCH: "The hall's queue system records this service at another "
    "window or with another member of staff than the rating names.",
    Reason.TICKET_ARRIVED: "The queue system's record of this service arrived late and matched.",
    Reason.OUTLIER_BURST: _PATTERN,
    Reason.OUTLIER_EPISODE: _PATTERN,
    Reason.OUTLIER_LOCKSTEP: _PATTERN,
    Reason.OUTLIER_DEVICE_REPEAT: _PATTERN,
    Reason.OUTLIER_SELF_RATING: _PATTERN,
    Reason.OUTLIER_COERCED: _PATTERN,
    Reason.OUTLIER_BOMBING: _PATTERN,
    Reason.OUTLIER_PYOD: _PATTERN,
    Reason.REVIEW_CLEARED: "A person checked it and cleared it.",
    Reason.REVIEW_CONFIRMED: "A person checked it and confirmed that it cannot count.",
    Reason.REVIEW_OVERDUE: "Its check is taking longer than planned and was passed to "
    "a supervisor.",
    Reason.APPEAL_UPHELD: "After an appeal, reviewers decided that it cannot count.",
    Reason.APPEAL_REVERSED: "An earlier decision to exclude it was reversed.",
    Reason.GROUND_NOT_ADMISSIBLE: _APPEAL_ONLY,
    Reason.NOT_OWN_RATING: _APPEAL_ONLY,
    Reason.RATING_NOT_COUNTED: _APPEAL_ONLY,
    Reason.NOT_LOW_SCORE: _APPEAL_ONLY,
    Reason.FILING_WINDOW_CLOSED: _APPEAL_ONLY,
    Reason.ALREADY_APPEALED: _APPEAL_ONLY,
    Reason.MONTHLY_QUOTA_EXCEEDED: _APPEAL_ONLY,
    Reason.ESCALATION_REQUESTED: _APPEAL_ONLY,
    Reason.DEADLINE_MISSED: _APPEAL_ONLY,
    Reason.AUDIT_FABRICATED: _AUDIT,
    Reason.AUDIT_COERCED: _AUDIT,
    Reason.AUDIT_DUPLICATE: _AUDIT,
}
#: Said for a code with no public wording yet (never the catalogue's own sentence).
FALLBACK_REASON = "It did not pass one of our checks."


def public_reasons(status: Status, codes: tuple[str, ...]) -> list[str]:
    """The plain sentences for a rating's current reasons, each once, in order; none
    while it counts (a counted rating needs no explaining)."""
    if status is Status.ACCEPTED:
        return []
    out: list[str] = []
    for code in codes:
        try:
            words = PUBLIC_REASONS[Reason(code)]
        except (KeyError, ValueError):
            words = FALLBACK_REASON
        if isinstance(words, Mapping):
            words = words.get(status) or next(iter(words.values()))
        if words and words not in out:
            out.append(words)
    return out


# -- the lookup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """What a receipt tells its rater. No personal data: see the module doc."""

    receipt: str
    status: Status
    rated_on: str  # the local date of submitted_at (YYYY-MM-DD), so the rater knows it
    reasons: tuple[str, ...] = ()
    follow_up: Mapping[str, str | None] | None = field(default=None)

    @property
    def state(self) -> str:
        return STATE[self.status]

    @property
    def counts(self) -> bool:
        return self.status.counted

    def as_dict(self) -> dict[str, Any]:
        return {
            "receipt": self.receipt,
            "state": self.state,
            "counts": self.counts,
            "status": self.status.value,
            "summary": SUMMARY[self.status],
            "reasons": list(self.reasons),
            "rated_on": self.rated_on,
            "follow_up": dict(self.follow_up) if self.follow_up is not None else None,
        }

    def rows(self) -> list[dict[str, str]]:
        """``field`` / ``value`` rows for a table or CSV."""
        doc = self.as_dict()
        rows = [
            {"field": k, "value": str(doc[k]).lower() if isinstance(doc[k], bool) else doc[k]}
            for k in ("receipt", "state", "counts", "status", "summary", "rated_on")
        ]
        rows += [{"field": "reason", "value": r} for r in self.reasons]
        if self.follow_up is not None:
            rows += [
                {"field": f"follow_up.{k}", "value": v or ""} for k, v in self.follow_up.items()
            ]
        return rows


@dataclass(frozen=True)
class LookupLimit:
    """How many receipt lookups one address may make in ``window_s`` seconds (the rule
    set's ``[receipts]`` table: ``lookups_per_minute``)."""

    lookups: int = 30
    window_s: int = 60

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> LookupLimit:
        unknown = sorted(set(section) - {"lookups_per_minute"})
        if unknown:
            raise ConfigError(f"[receipts]: unknown key(s) {', '.join(unknown)}")
        n = section.get("lookups_per_minute", cls.lookups)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("[receipts] lookups_per_minute: expected an integer >= 1")
        return cls(lookups=n)


class ReceiptService:
    """Receipt codes, and what one tells its rater."""

    def __init__(
        self,
        ledger: Ledger,
        codec: ReceiptCodec,
        rubric: Rubric,
        tz: ZoneInfo,
        followup: FollowUpView | None = None,
        limiter: Limiter | None = None,
        pseudonymiser: Pseudonymiser | None = None,
        limit: LookupLimit | None = None,
        namespace: str = "integrity",
    ) -> None:
        self.ledger = ledger
        self.codec = codec
        self.rubric = rubric
        self.tz = tz
        self.followup = followup
        self.limiter = limiter
        self.pseudonymiser = pseudonymiser
        self.limit = limit or LookupLimit()
        self.namespace = namespace

    @classmethod
    def from_app(cls, app: App) -> ReceiptService:
        """Wired from an App: its follow-up view when the composition root registered one."""
        view = app.get(FollowUpView) if FollowUpView in app.factories else None  # type: ignore[type-abstract]
        return cls(
            app.ledger,
            ReceiptCodec(app.pseudonymiser.key),
            app.core.rubric,
            app.core.timezone,
            followup=view,
            limiter=app.limiter,
            pseudonymiser=app.pseudonymiser,
            limit=LookupLimit.from_section(app.core.section("receipts")),
            namespace=app.settings.namespace,
        )

    def code(self, rating_id: int) -> str:
        return self.codec.code(rating_id)

    def look_up(self, code: str) -> Receipt:
        """What the receipt ``code`` tells; ``NotFound`` (saying nothing more) for a code
        that names no rating."""
        rating_id = self.codec.rating_id(code)
        if rating_id is None:
            raise NotFound(NO_SUCH_RECEIPT)
        found = self.ledger.find_ratings(RatingQuery(ids=[rating_id]))
        if not found:
            raise NotFound(NO_SUCH_RECEIPT)
        return self._receipt(found[0])

    def _receipt(self, r: StoredRating) -> Receipt:
        follow_up = None
        if self.followup is not None and self.rubric.is_low(r.composite):
            stage = self.followup.stage(r.rating_id)
            if stage is not None:
                follow_up = {"stage": stage[0], "reply": stage[1]}
        return Receipt(
            receipt=self.codec.code(r.rating_id),
            status=r.status,
            rated_on=r.submitted_at.astimezone(self.tz).date().isoformat(),
            reasons=tuple(public_reasons(r.status, r.reasons)),
            follow_up=follow_up,
        )

    def allow(self, address: str | None) -> float | None:
        """Count one lookup from ``address`` (the client's IP as the server sees it):
        ``None`` when allowed, else seconds until the next one would be. Keyed by the
        address's keyed hash (IPv6: its /64), never the address.

        Fails closed, like intake (a rating the limiter could not check is held, never
        accepted unchecked): a limiter that does not answer refuses the lookup with
        ``BackendUnavailable`` (:data:`LOOKUPS_UNAVAILABLE`; ``retry_after_s`` set, in
        seconds, at least 1), so a dead Redis never opens receipt codes to guessing at
        full speed."""
        if self.limiter is None or self.pseudonymiser is None or not address:
            return None
        subject = self._subject(address)
        check = LimitCheck(
            rule_id="receipt.lookups",
            key=f"{self.namespace}:v1:receipt:{subject}",
            window_ms=self.limit.window_s * 1000,
            limit=self.limit.lookups,
            ttl_ms=self.limit.window_s * 1000,
        )
        try:
            outcome = self.limiter.hit([check], uuid.uuid4().hex, None)
        except BackendUnavailable as err:
            wait = err.retry_after_s if err.retry_after_s is not None else LOOKUPS_RETRY_S
            raise BackendUnavailable(
                f"{LOOKUPS_UNAVAILABLE} ({err})", retry_after_s=max(1.0, wait)
            ) from err
        if outcome.allowed:
            return None
        wait_ms = max((f.retry_after_ms for f in outcome.failures), default=0)
        return max(1.0, wait_ms / 1000)

    def _subject(self, address: str) -> str:
        assert self.pseudonymiser is not None
        try:
            ip_hash, prefix_hash = self.pseudonymiser.address(address)
            version = normalise_ip(address).version
        except ValueError:  # not an address (a test client, a socket path)
            return self.pseudonymiser.device(f"receipt-lookup:{address}")
        # one IPv6 subscriber holds a whole /64: count it as one
        return prefix_hash if version == 6 else ip_hash


__all__ = [
    "ALPHABET",
    "LOOKUPS_RETRY_S",
    "LOOKUPS_UNAVAILABLE",
    "PUBLIC_REASONS",
    "FollowUpView",
    "LookupLimit",
    "Receipt",
    "ReceiptCodec",
    "ReceiptService",
    "public_reasons",
]
