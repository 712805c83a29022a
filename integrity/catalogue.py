"""The one catalogue of ledger event kinds and reason codes, with what each means.

Every event the engine writes has a ``kind`` from :class:`Kind`; every reason code a
decision, hold, void or filing carries is in :data:`REASONS`. Packages build their
codes from here instead of writing string literals, ``tests/unit/test_catalogue.py``
checks that the README's tables list exactly these, and ``integrity explain CODE``
prints the sentence behind a code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Kind(enum.StrEnum):
    """What happened, as written in ``events.kind``."""

    # A rating's status: the first is the hook's decision; the others move it later.
    DECISION = "decision"
    HOLD = "hold"
    CLEAR = "clear"
    CONFIRM = "confirm"
    VOID = "void"
    REINSTATE = "reinstate"
    # Records about the ledger itself and its configuration.
    RISK_SCORED = "risk.scored"
    RULE_SET_ACTIVATED = "rule_set.activated"
    VENUES_LOADED = "venues.loaded"
    REGISTRY_LOADED = "registry.loaded"
    STAFF_ADDED = "staff.added"
    STAFF_UPDATED = "staff.updated"
    STAFF_IMPORTED = "staff.imported"
    CONFIG_SEALED = "config.sealed"
    LEDGER_CHECKPOINT = "ledger.checkpoint"
    PERSON_OS_USER_MAPPED = "person.os_user_mapped"
    CREDENTIAL_ISSUED = "credential.issued"
    CREDENTIAL_REVOKED = "credential.revoked"
    PERIOD_CLOSED = "period.closed"
    RELEASE_PUBLISHED = "release.published"
    # Intake clients (the services that may submit ratings over HTTP).
    CLIENT_ADDED = "client.added"
    CLIENT_ROTATED = "client.rotated"
    CLIENT_REVOKED = "client.revoked"
    # Detection.
    CASE_OPENED = "case.opened"
    # Review of held ratings (the status changes are clear / confirm).
    CASE_REVIEWED = "case.reviewed"
    REVIEW_ESCALATED = "review.escalated"
    # Appeals: one kind per action.
    APPEAL_FILED = "appeal.filed"
    APPEAL_ASSIGNED = "appeal.assigned"
    APPEAL_INFO_REQUESTED = "appeal.info_requested"
    APPEAL_RESPONDED = "appeal.responded"
    APPEAL_UPHOLD_VOTE = "appeal.uphold_vote"
    APPEAL_UPHELD = "appeal.upheld"
    APPEAL_REJECTED = "appeal.rejected"
    APPEAL_WITHDRAWN = "appeal.withdrawn"
    APPEAL_ESCALATED = "appeal.escalated"
    APPEAL_REOPENED = "appeal.reopened"
    # Audit sampling.
    AUDIT_FRAME = "audit.frame"
    AUDIT_DRAW = "audit.draw"
    AUDIT_EXPAND = "audit.expand"
    AUDIT_BATCHES = "audit.batches"
    AUDIT_ASSIGN = "audit.assign"
    AUDIT_PULL = "audit.pull"
    AUDIT_FINDING = "audit.finding"
    AUDIT_TOKEN = "audit.token"
    # Telling people (followup/webhooks): outbound endpoints and their subscriptions.
    WEBHOOK_ADDED = "webhook.added"
    WEBHOOK_DISABLED = "webhook.disabled"
    WEBHOOK_ENABLED = "webhook.enabled"
    WEBHOOK_REMOVED = "webhook.removed"
    WEBHOOK_REPLAYED = "webhook.replayed"
    # Low-score alerts to a window's head (followup/alerts): one kind per step.
    ALERT_OPENED = "alert.opened"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    ALERT_VERIFIED = "alert.verified"
    ALERT_RECTIFIED = "alert.rectified"
    ALERT_REPLIED = "alert.replied"
    ALERT_CLOSED = "alert.closed"
    ALERT_VOIDED = "alert.voided"
    ALERT_OVERDUE = "alert.overdue"
    ALERT_ESCALATED = "alert.escalated"
    # Rectification cases opened by a month's close (followup/cases): one kind per step.
    RECTIFICATION_OPENED = "rectification.opened"
    RECTIFICATION_PLANNED = "rectification.planned"
    RECTIFICATION_NOTED = "rectification.noted"
    RECTIFICATION_CHECKED = "rectification.checked"
    RECTIFICATION_CLOSED = "rectification.closed"
    RECTIFICATION_OVERDUE = "rectification.overdue"
    RECTIFICATION_ESCALATED = "rectification.escalated"


KINDS: Mapping[Kind, str] = {
    Kind.DECISION: "the validation hook's decision on a new rating (its leaf covers the rating row)",
    Kind.HOLD: "detection held a counted rating for review (or a late ticket changed a hold's reasons)",
    Kind.CLEAR: "a reviewer cleared a held rating (or its late ticket matched): it counts again",
    Kind.CONFIRM: "a reviewer confirmed a hold (or its ticket never came): the rating is rejected",
    Kind.VOID: "the rating stops counting: an upheld appeal or an audit finding",
    Kind.REINSTATE: "a reversed appeal gives a voided rating back its earlier status",
    Kind.RISK_SCORED: "a detection run changed ratings' risk (SHA-256 of the new values)",
    Kind.RULE_SET_ACTIVATED: "a rule set became the active one",
    Kind.VENUES_LOADED: "the venue registry (hall networks, kiosk pads) was replaced",
    Kind.REGISTRY_LOADED: "the service registry (halls, windows, heads, roster) was replaced",
    Kind.STAFF_ADDED: "a person was added to the registry",
    Kind.STAFF_UPDATED: "one person's registry record was changed",
    Kind.STAFF_IMPORTED: "people were imported into the registry from a file",
    Kind.CONFIG_SEALED: (
        "a configuration table changed: SHA-256 and row count of its whole content "
        "(of a partitioned table, of one partition's)"
    ),
    Kind.LEDGER_CHECKPOINT: "a checkpoint (log size and root hash) was recorded",
    Kind.PERSON_OS_USER_MAPPED: "an OS account of a shared host was mapped to a person (or unmapped)",
    Kind.CREDENTIAL_ISSUED: "a personal token was issued to a person (its id and expiry; never the token)",
    Kind.CREDENTIAL_REVOKED: "a personal token was revoked: it no longer signs anyone in",
    Kind.PERIOD_CLOSED: "a reporting period (a month) was closed: its figures frozen (SHA-256 in evidence), ratings in it held from then on",
    Kind.RELEASE_PUBLISHED: "a period's public release was written (period, checkpoint, SHA-256 of its manifest)",
    Kind.CLIENT_ADDED: "an intake client was registered (scope, expiry, key id; never the key)",
    Kind.CLIENT_ROTATED: "an intake client's key was replaced; the old key stopped working",
    Kind.CLIENT_REVOKED: "an intake client was revoked; its key stopped working",
    Kind.CASE_OPENED: "detection opened a window case (coerced high scores) for review",
    Kind.CASE_REVIEWED: "a reviewer decided a window case's held ratings at once (selector, counts, reason)",
    Kind.REVIEW_ESCALATED: "an overdue held rating or window case was escalated to the admins",
    Kind.APPEAL_FILED: "a staff member filed an appeal (admitted, or ineligible with reasons)",
    Kind.APPEAL_ASSIGNED: "reviewers were assigned to an appeal",
    Kind.APPEAL_INFO_REQUESTED: "a reviewer asked the appellant for more information",
    Kind.APPEAL_RESPONDED: "the appellant answered a request for information",
    Kind.APPEAL_UPHOLD_VOTE: "one reviewer voted to uphold (more votes are needed)",
    Kind.APPEAL_UPHELD: "the appeal was upheld; the rating is voided",
    Kind.APPEAL_REJECTED: "the appeal was rejected; the rating stands",
    Kind.APPEAL_WITHDRAWN: "the appellant withdrew the appeal",
    Kind.APPEAL_ESCALATED: "the appeal went to a higher reviewer (overdue or asked)",
    Kind.APPEAL_REOPENED: "a decided appeal was reopened with new evidence",
    Kind.AUDIT_FRAME: "an audit frame (a period's counted ratings at a checkpoint) was fixed",
    Kind.AUDIT_DRAW: "the audit sample was drawn from a frame with a public seed",
    Kind.AUDIT_EXPAND: "a window's audit sample was expanded with the same seed",
    Kind.AUDIT_BATCHES: "audit batches were cut from a sample",
    Kind.AUDIT_ASSIGN: "an audit batch was assigned to an auditor",
    Kind.AUDIT_PULL: "an auditor pulled a batch (file SHA-256 recorded)",
    Kind.AUDIT_FINDING: "an auditor's finding on one sampled rating",
    Kind.AUDIT_TOKEN: "an auditor was issued an API token (older ledgers; now credential.issued)",
    Kind.WEBHOOK_ADDED: "an operator added a webhook endpoint and the event kinds it receives",
    Kind.WEBHOOK_DISABLED: "an operator paused a webhook endpoint (nothing is queued for it)",
    Kind.WEBHOOK_ENABLED: "an operator resumed a paused webhook endpoint",
    Kind.WEBHOOK_REMOVED: "an operator removed a webhook endpoint (its pending deliveries cancelled)",
    Kind.WEBHOOK_REPLAYED: "an operator re-queued dead-lettered webhook deliveries",
    Kind.ALERT_OPENED: "a counted low score raised an alert to its window's head (deadlines in evidence)",
    Kind.ALERT_ACKNOWLEDGED: "the window's head (or a supervisor, an admin) answered a low-score alert",
    Kind.ALERT_VERIFIED: "an alert's rating was verified: call-back outcome and finding",
    Kind.ALERT_RECTIFIED: "what was done about an alert's low score was recorded",
    Kind.ALERT_REPLIED: "the reply the rater sees on their receipt was written for an alert",
    Kind.ALERT_CLOSED: "a low-score alert was closed after its reply",
    Kind.ALERT_VOIDED: "an alert's rating stopped counting: the alert is void (the cause in evidence)",
    Kind.ALERT_OVERDUE: "a low-score alert missed a deadline (the 24-hour answer or the reply)",
    Kind.ALERT_ESCALATED: "an overdue low-score alert was escalated to the hall supervisor",
    Kind.RECTIFICATION_OPENED: "a month's close opened a rectification case (a window or staff member above the low-score mark) or a supervisory talk",
    Kind.RECTIFICATION_PLANNED: "a rectification case's plan and due date were written (or revised)",
    Kind.RECTIFICATION_NOTED: "a progress note was added to a rectification case",
    Kind.RECTIFICATION_CHECKED: "the next close checked a rectification case: resolved, unresolved (carried) or too few ratings",
    Kind.RECTIFICATION_CLOSED: "a rectification case or talk was closed by hand, with a reason",
    Kind.RECTIFICATION_OVERDUE: "an active rectification case or talk passed its due date (marked once)",
    Kind.RECTIFICATION_ESCALATED: "an overdue rectification case or talk was escalated to the hall supervisor",
}

#: Kinds that move a rating's current status (each carries ``status``).
STATUS_KINDS = frozenset(
    {Kind.DECISION, Kind.HOLD, Kind.CLEAR, Kind.CONFIRM, Kind.VOID, Kind.REINSTATE}
)


class Reason(enum.StrEnum):
    """Machine-readable reason codes, as written in decisions and events."""

    # Hard rules and real-time checks at intake.
    DUPLICATE_TICKET = "duplicate_ticket"
    LIMITER_UNAVAILABLE = "limiter_unavailable"
    RATE_LIMIT_DEVICE = "rate_limit.device"
    RATE_LIMIT_IP = "rate_limit.ip"
    RATE_LIMIT_PREFIX = "rate_limit.prefix"
    RATE_LIMIT_DEVICE_WINDOW = "rate_limit.device_window"
    RATE_LIMIT_CLIENT = "rate_limit.client"
    KIOSK_WRONG_WINDOW = "kiosk.wrong_window"
    UNKNOWN_WINDOW = "unknown_window"
    STAFF_NOT_ON_ROSTER = "staff_not_on_roster"
    SUBMITTED_BEFORE_SERVED = "time.submitted_before_served"
    SUBMITTED_IN_FUTURE = "time.submitted_in_future"
    TOO_OLD = "time.too_old"
    PERIOD_CLOSED = "period.closed"
    # Service records from the queue system (integrity/tickets.py).
    UNKNOWN_TICKET = "unknown_ticket"
    TICKET_MISMATCH = "ticket_mismatch"
    TICKET_ARRIVED = "ticket.arrived"
    # Detection.
    OUTLIER_BURST = "outlier.burst"
    OUTLIER_EPISODE = "outlier.episode"
    OUTLIER_LOCKSTEP = "outlier.lockstep"
    OUTLIER_DEVICE_REPEAT = "outlier.device_repeat"
    OUTLIER_SELF_RATING = "outlier.self_rating"
    OUTLIER_COERCED = "outlier.coerced"
    OUTLIER_BOMBING = "outlier.bombing"
    OUTLIER_PYOD = "outlier.pyod"
    # Review of held ratings.
    REVIEW_CLEARED = "review.cleared"
    REVIEW_CONFIRMED = "review.confirmed"
    REVIEW_OVERDUE = "review.overdue"
    # Appeals: outcomes on the rating, and why a filing was not admitted.
    APPEAL_UPHELD = "appeal.upheld"
    APPEAL_REVERSED = "appeal.reversed"
    GROUND_NOT_ADMISSIBLE = "ground_not_admissible"
    NOT_OWN_RATING = "not_own_rating"
    RATING_NOT_COUNTED = "rating_not_counted"
    NOT_LOW_SCORE = "not_low_score"
    FILING_WINDOW_CLOSED = "filing_window_closed"
    ALREADY_APPEALED = "already_appealed"
    MONTHLY_QUOTA_EXCEEDED = "monthly_quota_exceeded"
    # Appeals: why an appeal went to supervisors.
    ESCALATION_REQUESTED = "escalated"
    DEADLINE_MISSED = "deadline.missed"
    # Audit findings that void a rating.
    AUDIT_FABRICATED = "audit.fabricated"
    AUDIT_COERCED = "audit.coerced"
    AUDIT_DUPLICATE = "audit.duplicate"


REASONS: Mapping[Reason, str] = {
    Reason.DUPLICATE_TICKET: "another rating already holds this ticket (one service, one rating)",
    Reason.LIMITER_UNAVAILABLE: "the rate limiter did not answer; held instead of accepted unchecked",
    Reason.RATE_LIMIT_DEVICE: "too many ratings from this device in the rule's window",
    Reason.RATE_LIMIT_IP: "too many ratings from this address in the rule's window",
    Reason.RATE_LIMIT_PREFIX: "too many ratings from this /24 or /64 in the rule's window",
    Reason.RATE_LIMIT_DEVICE_WINDOW: "too many ratings from this device for this window",
    Reason.RATE_LIMIT_CLIENT: "too many ratings from this intake client in the rule's window",
    Reason.KIOSK_WRONG_WINDOW: "a registered rating pad was used for another window than its own",
    Reason.UNKNOWN_WINDOW: "the window is not in the service registry (a typo or a phantom window)",
    Reason.STAFF_NOT_ON_ROSTER: "the staff member named is not on the window's roster that day",
    Reason.SUBMITTED_BEFORE_SERVED: "submitted before the service was completed",
    Reason.SUBMITTED_IN_FUTURE: "submitted_at is later than the time of receipt",
    Reason.TOO_OLD: "a live rating submitted or served longer ago than the rule set's [intake] max_age_s",
    Reason.PERIOD_CLOSED: "the rating's period (month of served_at, else submitted_at) is closed",
    Reason.UNKNOWN_TICKET: "the queue system has no service record of the ticket (held while feeds lag, then rejected)",
    Reason.TICKET_MISMATCH: "the window or staff differs from the queue system's service record of the ticket",
    Reason.TICKET_ARRIVED: "the ticket's service record arrived late and matches: the hold is lifted",
    Reason.OUTLIER_BURST: "a window's ratings in a time bucket far above its own baseline",
    Reason.OUTLIER_EPISODE: "counted ratings of a rate-limit episode: the same source just before or between its refusals",
    Reason.OUTLIER_LOCKSTEP: (
        "many devices behind one address or prefix rating one window on one day, far beyond "
        "the window's share of its area's traffic"
    ),
    Reason.OUTLIER_DEVICE_REPEAT: "one device, or a ring of devices, rating one window across many tickets with skewed scores",
    Reason.OUTLIER_SELF_RATING: "a non-kiosk device rating many tickets at one window just after service",
    Reason.OUTLIER_COERCED: "a window's fast, straight-lined top scores far above its own baseline and peers",
    Reason.OUTLIER_BOMBING: "low scores concentrated on few sources, near-duplicate comments, or a shift",
    Reason.OUTLIER_PYOD: "held on combined soft signals (ECOD, rater fairness) beside a weaker finding",
    Reason.REVIEW_CLEARED: "a reviewer cleared the hold",
    Reason.REVIEW_CONFIRMED: "a reviewer confirmed the hold",
    Reason.REVIEW_OVERDUE: "review escalated: held past its review deadline undecided",
    Reason.APPEAL_UPHELD: "voided by an upheld appeal",
    Reason.APPEAL_REVERSED: "an appeal that voided it was reversed",
    Reason.GROUND_NOT_ADMISSIBLE: "appeal filing: the ground is not one of the admissible grounds",
    Reason.NOT_OWN_RATING: "appeal filing: the rating is not about the appellant",
    Reason.RATING_NOT_COUNTED: "appeal filing: the rating does not count; nothing to appeal",
    Reason.NOT_LOW_SCORE: "appeal filing: the rating is not a low score",
    Reason.FILING_WINDOW_CLOSED: "appeal filing: filed after the filing window",
    Reason.ALREADY_APPEALED: "appeal filing: another appeal already contests the rating",
    Reason.MONTHLY_QUOTA_EXCEEDED: "appeal filing: the appellant's monthly quota is used up",
    Reason.ESCALATION_REQUESTED: "appeal escalated: a person asked supervisors to look at it",
    Reason.DEADLINE_MISSED: "appeal escalated: its decision deadline passed undecided",
    Reason.AUDIT_FABRICATED: "voided: an auditor found the rating fabricated",
    Reason.AUDIT_COERCED: "voided: an auditor found the rating coerced",
    Reason.AUDIT_DUPLICATE: "voided: an auditor found the rating a duplicate",
}


def describe(code: str) -> str:
    """The sentence behind a reason code or event kind; ``KeyError`` for an unknown one."""
    if code in REASONS:
        return REASONS[Reason(code)]
    if code in KINDS:
        return KINDS[Kind(code)]
    raise KeyError(code)


def is_reason(code: str) -> bool:
    return code in REASONS


def rate_limit_reason(key: str) -> Reason:
    """The reason a broken rate-limit rule on ``key`` (device, ip, ...) gives."""
    return Reason(f"rate_limit.{key}")
