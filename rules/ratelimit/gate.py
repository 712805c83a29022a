"""The rate-limit gate: a rule set's ``[[limits]]`` applied to one rating, in one limiter call.

Which rules apply depends on the venue registry: ip/prefix rules of scope ``venue`` when
the rater's address is a registered hall network, of scope ``default`` otherwise;
device/device_window rules of scope ``kiosk`` when the device is a registered rating
pad, of scope ``default`` otherwise; scope ``any`` always. Rules on key ``client`` (the
intake client that sent the rating) apply to every rating that records a client, so
a flood through one client key is bounded whatever addresses and devices it claims.
(A pad used at another window is a real-time check: :class:`rules.realtime.KioskGate`.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from integrity.catalogue import Reason
from integrity.model import Rating, Status, VenueRegistry, Verdict
from integrity.ports import GateContext, LimitCheck, Limiter, LimitOutcome
from rules.ratelimit.memory import epoch_ms
from rules.realtime import Snapshot
from rules.ruleset import LimitRule, RuleSet

KEY_SCHEMA = "v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Plan(NamedTuple):
    """What the gate asks the limiter for one rating."""

    checks: tuple[LimitCheck, ...]
    rules: dict[str, LimitRule]
    day_end_ms: int  # epoch ms of the next local midnight after the rating's day time
    day_time_ms: int  # epoch ms of the time the calendar day was judged by
    at_ms: int | None


class RateLimitGate:
    """Implements :class:`integrity.ports.Gate` for the rule set's rate limits.

    Keys: ``{namespace}:v1:rl:{rule_id}:{subject}``, plus ``:{YYYY-MM-DD}`` (local date)
    for calendar-day rules. Raises ``BackendUnavailable`` when the limiter does.
    """

    name = "rate_limit"
    unavailable_reason: str = Reason.LIMITER_UNAVAILABLE

    def __init__(
        self,
        ruleset: RuleSet,
        limiter: Limiter,
        venues: Snapshot[VenueRegistry] | VenueRegistry | None = None,
        namespace: str = "integrity",
    ) -> None:
        self.ruleset = ruleset
        self.limiter = limiter
        if not isinstance(venues, Snapshot):
            venues = Snapshot.fixed(venues or VenueRegistry())
        self.venues = venues
        self.namespace = namespace
        self._tz = ruleset.tz
        self._days: dict[date, tuple[str, int, int]] = {}
        # the last local day planned: (first ms, ms after its end, _day's answer)
        self._last_day: tuple[int, int, tuple[str, int, int]] = (0, 0, ("", 0, 0))
        self._specs: dict[tuple[bool, bool, bool], _Specs] = {}

    @property
    def registry(self) -> VenueRegistry:
        return self.venues.registry

    # --- Gate port ---------------------------------------------------------------------

    def reload(self) -> bool:
        """Pick up a venue registry that was replaced since it was read."""
        return self.venues.reload()

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None:
        plan = self.plan(rating, ctx)
        outcome = self.limiter.hit(plan.checks, rating.fingerprint, plan.at_ms)
        self._note(ctx, rating, plan, outcome)
        return self._verdict(rating, plan, outcome)

    def release(self, rating: Rating, ctx: GateContext) -> None:
        """Refund the slots this rating took: the ledger kept it as a duplicate or a retry,
        or did not write it at all.

        Gives back exactly the keys the check with this ``ctx`` newly recorded it in
        (none after a refusal or a limiter failure; none a retry found it in already,
        which belong to the stored original).
        """
        taken = ctx.taken.pop((self.name, rating.fingerprint), ())
        if taken:
            self.limiter.release(taken, rating.fingerprint)

    def check_many(self, ratings: Sequence[Rating], ctx: GateContext) -> list[Verdict | None]:
        """:meth:`check` for several ratings in order, with one ``limiter.hit_many``."""
        plans = [self.plan(r, ctx) for r in ratings]
        outcomes = self.limiter.hit_many(
            [(p.checks, r.fingerprint, p.at_ms) for r, p in zip(ratings, plans, strict=True)]
        )
        for r, p, o in zip(ratings, plans, outcomes, strict=True):
            self._note(ctx, r, p, o)
        return [self._verdict(r, p, o) for r, p, o in zip(ratings, plans, outcomes, strict=True)]

    def _note(self, ctx: GateContext, rating: Rating, plan: _Plan, outcome: LimitOutcome) -> None:
        """Keep the receipt: the checks whose key newly got this rating (see ``release``)."""
        added = outcome.added
        # every key (the usual case: a first submission) is the plan's own tuple
        taken = (
            plan.checks if len(added) == len(plan.checks) else tuple(plan.checks[i] for i in added)
        )
        ctx.taken[(self.name, rating.fingerprint)] = taken

    # --- planning ----------------------------------------------------------------------

    def applicable_rules(self, rating: Rating) -> tuple[LimitRule, ...]:
        """The limit rules that apply to this rating, in rule-set order."""
        return self._specs_for(rating).rules

    def _specs_for(self, rating: Rating) -> _Specs:
        reg = self.registry
        at_venue = reg.venue_of_address(rating.ip_hash, rating.prefix_hash) is not None
        at_kiosk = reg.kiosk(rating.device_hash) is not None
        combo = (at_venue, at_kiosk, rating.client_id is not None)
        specs = self._specs.get(combo)
        if specs is None:
            rules = self._rules_for(*combo)
            specs = self._specs[combo] = _Specs(
                rules,
                {rule.id: rule for rule in rules},
                tuple(
                    (
                        rule,
                        f"{self.namespace}:{KEY_SCHEMA}:rl:{rule.id}:",
                        None if rule.window_s is None else rule.window_s * 1000,
                        _SUBJECTS[rule.key],
                    )
                    for rule in rules
                ),
            )
        return specs

    def _rules_for(self, at_venue: bool, at_kiosk: bool, has_client: bool) -> tuple[LimitRule, ...]:
        address_scope = "venue" if at_venue else "default"
        device_scope = "kiosk" if at_kiosk else "default"
        out = []
        for rule in self.ruleset.limits:
            if rule.key == "client":
                if has_client:
                    out.append(rule)
                continue
            wanted = address_scope if rule.key in ("ip", "prefix") else device_scope
            if rule.scope in ("any", wanted):
                out.append(rule)
        return tuple(out)

    def _day(self, day_time: datetime) -> tuple[str, int, int]:
        """``(local date, ms of the next local midnight, ms a day after that)``, cached per date."""
        local_date = day_time.astimezone(self._tz).date()
        hit = self._days.get(local_date)
        if hit is None:
            next_midnight = datetime.combine(
                local_date + timedelta(days=1), time(0), tzinfo=self._tz
            )
            hit = (
                local_date.isoformat(),
                epoch_ms(next_midnight),
                epoch_ms(next_midnight + timedelta(days=1)),
            )
            if len(self._days) > 400:
                self._days.clear()
            self._days[local_date] = hit
        return hit

    def _day_span(self, day_time: datetime, day_time_ms: int) -> tuple[str, int, int]:
        """``_day(day_time)``, remembering the span of epoch ms of that local day, so the
        next ratings of the same day skip the time zone arithmetic. The span is kept
        only when both its ends fall on that date (local dates grow with time, so every
        instant between does too)."""
        known = self._day(day_time)
        day, day_end_ms, _ = known
        local_date = date.fromisoformat(day)
        start_ms = epoch_ms(datetime.combine(local_date, time(0), tzinfo=self._tz))

        def on_day(ms: int) -> bool:
            return (_EPOCH + timedelta(milliseconds=ms)).astimezone(self._tz).date() == local_date

        if start_ms <= day_time_ms < day_end_ms and on_day(start_ms) and on_day(day_end_ms - 1):
            self._last_day = (start_ms, day_end_ms, known)
        return known

    def plan(self, rating: Rating, ctx: GateContext) -> _Plan:
        """The limiter checks for ``rating``; replay judges at ``submitted_at``, live at receipt."""
        # The calendar day: the rating's own time on replay; live, the time of receipt
        # (what the Redis server clock also measures, give or take the network).
        day_time = rating.submitted_at if ctx.replay else rating.received_at
        day_time_ms = epoch_ms(day_time)
        at_ms = day_time_ms if ctx.replay else None
        first, after, known = self._last_day
        if not first <= day_time_ms < after:
            known = self._day_span(day_time, day_time_ms)
        day, day_end_ms, day_after_ms = known
        # Keep a day's key a full day past its end: late (skewed) ratings still find it.
        day_ttl_ms = max(1, day_after_ms - day_time_ms)

        specs = self._specs_for(rating)
        checks = []
        subjects: dict[str, str] = {}
        for rule, prefix, window_ms, subject in specs.checks:
            who = subjects.get(rule.key)
            if who is None:
                who = subjects[rule.key] = subject(rating)
            key = prefix + who
            if window_ms is None:
                checks.append(LimitCheck(rule.id, f"{key}:{day}", 0, rule.limit, day_ttl_ms))
            else:
                checks.append(LimitCheck(rule.id, key, window_ms, rule.limit, window_ms))
        return _Plan(tuple(checks), specs.by_id, day_end_ms, day_time_ms, at_ms)

    # --- verdict -----------------------------------------------------------------------

    def _verdict(self, rating: Rating, plan: _Plan, outcome: LimitOutcome) -> Verdict | None:
        if outcome.allowed:
            return None
        reasons: set[str] = set()
        evidence: dict[str, Any] = {}
        status: Status | None = None
        retry_after_s: float | None = None

        if not outcome.allowed:
            entries = []
            for failure in outcome.failures:
                rule = plan.rules[failure.rule_id]
                if rule.window_s is None:
                    # a fixed bucket frees up when the local day ends
                    retry_ms = max(0, plan.day_end_ms - plan.day_time_ms)
                else:
                    retry_ms = failure.retry_after_ms
                retry_s = retry_ms / 1000
                entries.append(
                    {
                        "rule": rule.id,
                        "limit": rule.limit,
                        "window_s": rule.window_s if rule.window_s is not None else "calendar_day",
                        "retry_after_s": retry_s,
                    }
                )
                reasons.add(rule.reason)
                retry_after_s = retry_s if retry_after_s is None else max(retry_after_s, retry_s)
                status = _worse(status, Status.REJECTED if rule.action == "reject" else Status.HELD)
            evidence["rules"] = entries

        if status is None:
            return None
        return Verdict(
            status=status,
            reasons=tuple(sorted(reasons)),
            evidence=evidence,
            retry_after_s=retry_after_s,
        )


def _subject(rule: LimitRule, rating: Rating) -> str:
    return _SUBJECTS[rule.key](rating)


#: What each rule key counts, read from a rating.
_SUBJECTS: dict[str, Callable[[Rating], str]] = {
    "device": lambda r: r.device_hash,
    "ip": lambda r: r.ip_hash,
    "prefix": lambda r: r.prefix_hash,
    "device_window": lambda r: f"{r.device_hash}:{r.window_id}",
    "client": lambda r: str(r.client_id),
}


class _Specs(NamedTuple):
    """The rules that apply to one kind of rating, planned once: each rule with its
    key prefix, window in ms (``None``: calendar day) and subject."""

    rules: tuple[LimitRule, ...]
    by_id: dict[str, LimitRule]
    checks: tuple[tuple[LimitRule, str, int | None, Callable[[Rating], str]], ...]


_SEVERITY = {Status.HELD: 1, Status.REJECTED: 2}


def _worse(a: Status | None, b: Status) -> Status:
    if a is None or _SEVERITY[b] > _SEVERITY[a]:
        return b
    return a
