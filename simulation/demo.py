"""``integrity demo``: a simulated month through the real engine, on embedded defaults.

Generates a month for a few halls (honest crowds behind hall Wi-Fi, kiosks, carrier
NAT; returning citizens; and attacks with ground truth), ending at the demo's "now"
(the month's last day is yesterday), registers people with personal tokens and a
service registry (halls with Chinese names, windows with their heads, the staff
roster), loads the venue registry, ingests everything through the validation hook,
runs detection, walks the follow-up loop on the low-score alerts (answered in time,
late or never; overdue ones escalated), closes the latest month that ended within
its days (rectification cases), then shows what was stopped and why and the
performance report next to the honest truth, and writes the month's page and
spreadsheet.

The instance it leaves is one every README journey can be walked on: reviewers,
auditors, supervisors, window heads and staff can sign in with the tokens written to
``HOME/tokens/`` (mode 0600), and the month's last days are still within the appeals'
filing window.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bootstrap import init_instance, open_app
from followup.alerts.model import Finding, State
from followup.alerts.service import AlertService
from followup.cases.service import MonthClose
from integrity.app import App, Settings
from integrity.auth import Credentials
from integrity.clock import FrozenClock
from integrity.ingest import IngestSummary
from integrity.model import Status
from integrity.people import StaffRecord, StaffRegistry
from integrity.ports import RatingQuery
from integrity.registry import Hall, RegistryService, RosterEntry, ServiceRegistry, Window
from integrity.render import render_to_string
from integrity.reports import Period, performance
from integrity.venues import pseudonymise_venues
from publishing import Pages
from publishing.book import render_book
from publishing.page import render_page
from rules.detectors.service import DetectService
from simulation import WorldConfig, simulate

#: Hall names for the demo's registry (city service centres), in hall order.
HALL_NAMES = (
    "东城政务服务中心",
    "西城政务服务中心",
    "朝阳政务服务中心",
    "海淀政务服务中心",
    "丰台政务服务中心",
    "石景山政务服务中心",
    "通州政务服务中心",
    "顺义政务服务中心",
)
#: The demo's people beside the simulated staff: (id, roles, unit, name).
DEMO_PEOPLE = (
    ("A1", ("admin",), "HQ", "系统管理员"),
    ("R1", ("reviewer",), "督查室", "复核员一"),
    ("R2", ("reviewer",), "督查室", "复核员二"),
    ("AU1", ("auditor",), "第三方审计", "审计员"),
)
#: The demo's time zone (the default rule set's).
DEMO_TZ = ZoneInfo("Asia/Shanghai")


def demo_start(days: int, now: datetime | None = None) -> date:
    """The first day of a ``days``-day month ending yesterday (the demo's time zone)."""
    today = (now or datetime.now(UTC)).astimezone(DEMO_TZ).date()
    return today - timedelta(days=days)


def run_demo(
    home: str,
    *,
    seed: int = 7,
    days: int = 30,
    start: date | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run the demo in a fresh instance folder ``home``; returns the numbers it printed.

    ``start``: the month's first local day (default: ``days`` days before today, so the
    month ends yesterday and its last ratings can still be appealed)."""
    path = Path(home)
    if path.exists():
        if not (path / "secret.key").exists() and any(path.iterdir()):
            raise SystemExit(f"{path} exists and is not an integrity instance; pick another --home")
        shutil.rmtree(path)
    settings = Settings.resolve(home=path, env={})
    init_instance(settings)

    first = start or demo_start(days)
    last = first + timedelta(days=days - 1)
    t0 = time.perf_counter()
    world_start = datetime.combine(first, clock_time(0), tzinfo=DEMO_TZ)
    world = simulate(WorldConfig(seed=seed, days=days, start=world_start))
    # what has arrived by now: a citizen served on the month's last day may rate later
    ratings, labels = _received_by(world, datetime.now(UTC))
    t_sim = time.perf_counter() - t0
    late = len(world.ratings) - len(ratings)
    echo(
        f"Simulated {len(ratings):,} ratings over {days} days "
        f"({sum(1 for lb in labels if lb.kind == 'honest'):,} honest) in {t_sim:.1f} s, "
        f"{first.isoformat()} to {last.isoformat()}"
        + (f" ({late} more will only be submitted after now)." if late else ".")
    )

    with open_app(settings) as app:
        tokens = _register_people(app, world, path)
        reg = _registry(world, first)
        app.get(RegistryService).load(reg, "demo")
        echo(
            f"Registered {len(world.staff_ids) + len(DEMO_PEOPLE) + 2 * len(reg.halls)} people "
            f"(tokens of {', '.join(tokens)} in {path / 'tokens'}, mode 0600) and a service "
            f"registry: {', '.join(f'{h.name} ({h.hall_id})' for h in reg.halls.values())}."
        )
        pv = pseudonymise_venues(world.venues, app.pseudonymiser)
        app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), actor="demo")
        app.hook.reload()
        echo(
            f"Registered {len(pv.venues)} venues (halls; the SMS/phone gateway when present): "
            f"{len(pv.addresses)} shared-address entries, {len(pv.kiosks)} kiosk pads."
        )

        t0 = time.perf_counter()
        summary = IngestSummary()
        labelled: list[tuple[str, int]] = []  # (traffic kind, rating id), identical retries once
        for label, item in zip(labels, app.hook.validate_stream(ratings, replay=True), strict=True):
            summary.add(item)
            if item.decision is not None and not item.decision.replayed:
                labelled.append((label.kind, item.decision.rating_id))
        t_ing = time.perf_counter() - t0
        echo(
            f"Ingested through the hook in {t_ing:.1f} s ({summary.lines / t_ing:,.0f} ratings/s)."
        )
        after_hook = _statuses(app)

        t0 = time.perf_counter()
        with warnings.catch_warnings():  # pyod's ECOD warns on constant features; harmless here
            warnings.simplefilter("ignore", RuntimeWarning)
            run = app.get(DetectService).run(None, None)
        t_det = time.perf_counter() - t0
        head = app.log.checkpoint(app.clock.now())
        echo(
            f"Detection over the ledger in {t_det:.1f} s: {run.held} more held, "
            f"{len(run.cases)} window case(s) for review.\n"
            f"Ledger sealed: {head.checkpoint()}\n"
        )
        final = _statuses(app)
        loop = _follow_up(app, seed, echo)
        closed = _close_month(app, first, last, echo)

        by_kind: dict[str, list[int]] = defaultdict(list)
        for kind, rid in labelled:
            by_kind[kind].append(rid)
        rows = []
        for kind in sorted(by_kind, key=lambda k: (k != "honest", k)):
            ids = by_kind[kind]
            reasons: Counter[str] = Counter()
            for rid in ids:
                reasons.update(
                    r.split(".")[0] if r.startswith("rate_limit") else r for r in final[rid][1]
                )
            stopped_hook = sum(after_hook[rid][0] != "accepted" for rid in ids)
            stopped = sum(final[rid][0] != "accepted" for rid in ids)
            rows.append(
                {
                    "traffic": kind,
                    "ratings": len(ids),
                    "stopped_by_hook": stopped_hook,
                    "stopped_in_all": stopped,
                    "not_counted": stopped / len(ids),
                    "top_reasons": ", ".join(f"{r} ({n})" for r, n in reasons.most_common(2)),
                }
            )
        echo("What happened to each kind of traffic (ground truth from the simulator; identical")
        echo("retries are answered with the first decision and written once):")
        echo(
            render_to_string(
                rows,
                [
                    "traffic",
                    "ratings",
                    "stopped_by_hook",
                    "stopped_in_all",
                    "not_counted",
                    "top_reasons",
                ],
                "table",
            )
        )

        report = performance(app.ledger, "window", app.core.rubric)
        truth = world.honest_window_scores()
        naive = _naive_scores(ratings, app.core.rubric)
        for r in report:
            r["honest_truth"] = truth.get(r["window_id"])
            r["if_all_counted"] = naive.get(r["window_id"])
        echo("Performance by window (counted ratings only), beside the honest truth:")
        echo(
            render_to_string(
                report,
                [
                    "window_id",
                    "ratings",
                    "counted",
                    "score",
                    "honest_truth",
                    "if_all_counted",
                    "low_score_rate",
                    "held",
                    "rejected",
                ],
                "table",
            )
        )
        t0 = time.perf_counter()
        period = Period.between(first, last, app.core.timezone)
        view = app.get(Pages).view(None, period)
        page_path = path / f"report-{first.isoformat()}_{last.isoformat()}.html"
        book_path = page_path.with_suffix(".xlsx")
        page_path.write_text(render_page(view), "utf-8")
        book_path.write_bytes(render_book(view))
        t_page = time.perf_counter() - t0
        appeal = _appealable(app, world, last)
        prog = _program()
        tok = path / "tokens"
        span = f"--from {first.isoformat()} --to {last.isoformat()}"
        month = (first + timedelta(days=days // 2)).strftime("%Y-%m")  # most of the data
        echo(f"The month's page and spreadsheet ({t_page:.1f} s), open them first:")
        echo(f"  {page_path}")
        echo(f"  {book_path}")
        echo("")
        echo(f"Explore it, signed in with the tokens in {tok} (A1 admin, R1 and R2 reviewers,")
        echo("AU1 auditor, H1-SUP hall supervisor, H1-HEAD window head, a staff member):")
        echo(f"  export INTEGRITY_HOME={path}")
        echo(
            f"  INTEGRITY_TOKEN_FILE={tok / 'R1'} {prog} review list       # held ratings and window cases"
        )
        echo(f"  INTEGRITY_TOKEN_FILE={tok / 'H1-SUP'} {prog} report --by staff {span}")
        echo(f"  INTEGRITY_TOKEN_FILE={tok / 'H1-SUP'} {prog} report page {span} -o page.html")
        if appeal is not None:
            staff_id, rating_id = appeal
            echo(
                f"  INTEGRITY_TOKEN_FILE={tok / staff_id} {prog} appeal file {rating_id} "
                '--ground abusive_or_unrelated --reason "unrelated to the service"'
            )
            echo(f"  INTEGRITY_TOKEN_FILE={tok / 'A1'} {prog} appeal assign 1 --reviewer R1")
        echo(f"  INTEGRITY_TOKEN_FILE={tok / 'A1'} {prog} audit frame --period {month}")
        echo(f"  {prog} publish --period {month} -o release && {prog} publish verify release")
        echo(
            f"  {prog} serve     # then, from anywhere: INTEGRITY_TOKEN_FILE={tok / 'R1'} {prog} --server http://127.0.0.1:8080 review list"
        )
        echo(f"  {prog} ledger verify")
        return {
            "summary": summary.as_dict(),
            "traffic": rows,
            "report": report,
            "page": str(page_path),
            "book": str(book_path),
            "page_seconds": t_page,
            "tokens": {k: str(v) for k, v in tokens.items()},
            "appealable": appeal,
            "follow_up": loop,
            "closed": closed,
            "first_day": first,
            "last_day": last,
        }


def _register_people(app: App, world: Any, home: Path) -> dict[str, Path]:
    """Admins, reviewers, an auditor, each hall's supervisor and window head, and every
    simulated staff member; tokens for one of each, written to ``home/tokens/ID`` (0600)."""
    halls = sorted(
        {s.split("-")[0] for s in world.staff_ids} | {w.split("-")[0] for w in world.window_ids}
    )
    records = [
        StaffRecord(pid, frozenset(roles), name=name, unit=unit)
        for pid, roles, unit, name in DEMO_PEOPLE
    ]
    for i, h in enumerate(halls):
        hall_name = HALL_NAMES[i % len(HALL_NAMES)]
        windows = tuple(w for w in world.window_ids if w.startswith(f"{h}-"))
        records.append(
            StaffRecord(f"{h}-SUP", frozenset({"supervisor"}), name=f"{hall_name}主任", unit=h)
        )
        records.append(
            StaffRecord(
                f"{h}-HEAD",
                frozenset({"head"}),
                name=f"{hall_name}窗口负责人",
                unit=h,
                windows=windows,
            )
        )
    for sid in world.staff_ids:
        records.append(
            StaffRecord(
                sid,
                frozenset({"staff"}),
                unit=sid.split("-")[0],
                windows=(world.staff_window[sid],),
            )
        )
    app.get(StaffRegistry).import_records(None, records)
    creds = app.get(Credentials)
    folder = home / "tokens"
    folder.mkdir(mode=0o700, exist_ok=True)
    who = ["A1", "R1", "R2", "AU1", f"{halls[0]}-SUP", f"{halls[0]}-HEAD"]
    out: dict[str, Path] = {}
    for pid in who:
        issued = creds.issue(None if pid == "A1" else "A1", pid, expires="30d", note="demo")
        out[pid] = _write_token(folder / pid, issued.token)
    return out


def _write_token(path: Path, token: str) -> Path:
    """Write a token readable by this user alone (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def _registry(world: Any, first: date) -> ServiceRegistry:
    """Halls (Chinese names, a supervisor each), windows (a head each) and the roster."""
    halls: dict[str, Hall] = {}
    windows: dict[str, Window] = {}
    for w in world.window_ids:
        h = w.split("-")[0]
        i = int(h[1:]) - 1
        name = HALL_NAMES[i % len(HALL_NAMES)]
        halls.setdefault(h, Hall(h, name, f"{h}-SUP"))
        windows[w] = Window(w, h, f"{name} {int(w.split('-W')[1])} 号窗口", f"{h}-HEAD")
    roster = tuple(RosterEntry(s, world.staff_window[s], first) for s in world.staff_ids)
    return ServiceRegistry(halls, windows, roster)


def _appealable(app: App, world: Any, last: date) -> tuple[str, int] | None:
    """A counted low score about a staff member from the month's last days (still within
    the appeals' filing window), and a token for that staff member; ``None`` if none."""
    since = datetime.combine(last - timedelta(days=4), clock_time(0), tzinfo=DEMO_TZ)
    found = app.ledger.find_ratings(
        RatingQuery(
            statuses=(Status.ACCEPTED,),
            composite_below=app.core.rubric.low_score_below,
            submitted_from=since.astimezone(UTC),
        )
    )
    by_staff: dict[str, list[int]] = defaultdict(list)
    for r in found:
        if r.staff_id:
            by_staff[r.staff_id].append(r.rating_id)
    if not by_staff:
        return None
    staff_id = max(by_staff, key=lambda s: (len(by_staff[s]), s))
    issued = app.get(Credentials).issue("A1", staff_id, expires="30d", note="demo")
    _write_token(Path(app.settings.home) / "tokens" / staff_id, issued.token)
    return staff_id, max(by_staff[staff_id])


def _program() -> str:
    """How to call the CLI from here: ``integrity`` if it is on PATH, else its path."""
    argv0 = Path(sys.argv[0])
    if (
        argv0.name == "integrity"
        and shutil.which("integrity") != str(argv0.resolve())
        and argv0.exists()
    ):
        return str(argv0)
    return "integrity"


def _statuses(app: Any) -> dict[int, tuple[str, list[str]]]:
    """Current status and reason codes of every rating."""
    return {
        r.rating_id: (r.status.value, list(r.reasons))
        for r in app.ledger.find_ratings(RatingQuery())
    }


def _received_by(world: Any, now: datetime) -> tuple[list[dict[str, Any]], list[Any]]:
    """The world's ratings submitted by ``now``, with their truth labels."""
    kept = [
        (r, lb)
        for r, lb in zip(world.ratings, world.truth, strict=True)
        if datetime.fromisoformat(r["submitted_at"]) <= now
    ]
    return [r for r, _ in kept], [lb for _, lb in kept]


def _naive_scores(ratings: list[dict[str, Any]], rubric: Any) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for obj in ratings:
        scores = obj["scores"]
        sums[obj["window_id"]].append(rubric.composite(scores))
    return {w: sum(v) / len(v) for w, v in sums.items()}


#: How the demo's window heads answer their alerts: (share, kind). ``on_time``: the whole
#: loop, answered within the day; ``late``: the same, answered after the 24 hours;
#: ``started``: acknowledged and verified, nothing more yet; the rest get no answer
#: (nor do alerts opened too recently for their head's first step).
ANSWERS = ((0.55, "on_time"), (0.12, "late"), (0.10, "started"))
REPLIES = (
    "已回访您反映的问题，窗口已整改服务流程，感谢您的监督。",
    "已核实情况并向您说明办理要求，窗口将加强解释引导。",
    "已对窗口人员开展服务规范培训，欢迎您再次评价监督。",
)


def _follow_up(app: App, seed: int, echo: Callable[[str], Any]) -> dict[str, int]:
    """Walk the follow-up loop on the month's low-score alerts, as the window heads would
    have: most answered within 24 hours, called back, rectified and replied to; some
    answered late; some started; the rest never answered, so the deadline check marks
    them overdue and escalates them to the hall supervisor. Every step is the real
    service call at its own time (a frozen clock per step), never later than now."""
    live = app.get(AlertService)
    now = app.clock.now()
    opened = live.sync(now).opened
    played = FrozenClock(now)
    heads = AlertService(
        app.ledger, app.people, played, live.policy, live.registry, live.rule_set_id
    )
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for ad in live.listing(None, states=(State.OPEN,)):
        a, head = ad.alert, ad.head
        draw, kind = rng.random(), "silent"
        for share, k in ANSWERS:
            if draw < share:
                kind = k
                break
            draw -= share
        if head is None or kind == "silent":
            counts["silent"] += 1
            continue
        first = rng.uniform(0.5, 20.0) if kind != "late" else rng.uniform(25.0, 60.0)
        at = a.opened_at + timedelta(hours=first)
        if at >= now:
            counts["silent"] += 1  # opened too recently: the head has not answered yet
            continue
        counts["on_time" if at < a.respond_by else "late"] += 1
        _answer(heads, played, head, a.alert_id, kind == "started", at, now, rng)
    run = live.escalate_overdue(None, now)
    done = live.listing(None, states=(State.CLOSED,))
    result = {
        "alerts_opened": opened,
        "answered_on_time": counts["on_time"],
        "answered_late": counts["late"],
        "closed_with_reply": len(done),
        "never_answered": counts["silent"],
        "overdue_marked": len(run.overdue),
        "escalated": len(run.escalated),
    }
    echo(
        f"Follow-up loop: {opened} low-score alerts opened for the window heads; "
        f"{result['answered_on_time']} answered within 24 hours, {result['answered_late']} "
        f"late, {result['closed_with_reply']} rectified, replied to the rater and closed; "
        f"{result['overdue_marked']} deadlines missed, {result['escalated']} alerts "
        "escalated to the hall supervisors.\n"
    )
    return result


def _answer(
    heads: AlertService,
    played: FrozenClock,
    head: str,
    alert_id: int,
    started_only: bool,
    at: datetime,
    now: datetime,
    rng: random.Random,
) -> None:
    """One head's steps on one alert from ``at``, a few hours apart, none after ``now``."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("acknowledge", {}),
        (
            "verify",
            {
                "reached": rng.random() < 0.8,
                "finding": Finding.SERVICE_PROBLEM
                if rng.random() < 0.7
                else Finding.MISUNDERSTANDING,
                "note": "已电话回访评价人，核实了办理过程中的问题。",
            },
        ),
    ]
    if not started_only:
        steps += [
            ("rectify", {"action": "窗口整改：复盘办理流程并开展服务规范培训。"}),
            ("reply", {"text": rng.choice(REPLIES)}),
            ("close", {}),
        ]
    for name, kwargs in steps:
        if at >= now:
            return
        played.set(at)
        getattr(heads, name)(head, alert_id, **kwargs)
        at += timedelta(hours=rng.uniform(1.0, 30.0))


def _close_month(
    app: App, first: date, last: date, echo: Callable[[str], Any]
) -> dict[str, Any] | None:
    """Close the latest calendar month that has ended and holds some of the demo's days
    (``integrity period close``): its figures frozen, a rectification case for every
    window and staff member above the low-score mark. ``None`` when no month has ended
    inside the demo's days (a short run within one month)."""
    month_start = last.replace(day=1)
    if last.month != (last + timedelta(days=1)).month:  # the demo ends on a month's last day
        month_start = (last + timedelta(days=1)).replace(day=1)
    end_of_prior = month_start - timedelta(days=1)
    if end_of_prior < first:
        return None
    label = end_of_prior.strftime("%Y-%m")
    done = app.get(MonthClose).close(None, label)
    opened = [c for c in done.opened if c.kind.value in ("window", "staff")]
    echo(
        f"Closed {label} (integrity period close): figures frozen "
        f"(sha256 {done.figures_sha256[:12]}...), {done.cases_opened} rectification case(s) "
        "opened for windows and staff above the low-score mark"
        + (": " + ", ".join(f"{c.kind.value} {c.subject}" for c in opened[:6]) if opened else "")
        + (" ..." if len(opened) > 6 else "")
        + ". Later changes to it are amendments (integrity period amendments).\n"
    )
    return {"period": label, "cases_opened": done.cases_opened, "talks": done.talks_opened}
