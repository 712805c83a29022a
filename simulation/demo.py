"""``integrity demo``: a simulated month through the real engine, on embedded defaults.

Generates a month for a few halls (honest crowds behind hall Wi-Fi, kiosks, carrier
NAT; returning citizens; and attacks with ground truth), loads the venue registry,
ingests everything through the validation hook, then shows what was stopped and why
and the performance report next to the honest truth.
"""

from __future__ import annotations

import shutil
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bootstrap import init_instance, open_app
from integrity.app import Settings
from integrity.ingest import IngestSummary
from integrity.ports import RatingQuery
from integrity.render import render_to_string
from integrity.reports import performance
from integrity.venues import pseudonymise_venues
from rules.detectors.service import DetectService
from simulation import WorldConfig, simulate


def run_demo(
    home: str, *, seed: int = 7, days: int = 30, echo: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run the demo in a fresh instance folder ``home``; returns the numbers it printed."""
    path = Path(home)
    if path.exists():
        if not (path / "secret.key").exists() and any(path.iterdir()):
            raise SystemExit(f"{path} exists and is not an integrity instance; pick another --home")
        shutil.rmtree(path)
    settings = Settings.resolve(home=path, env={})
    init_instance(settings)

    t0 = time.perf_counter()
    world = simulate(WorldConfig(seed=seed, days=days))
    t_sim = time.perf_counter() - t0
    echo(
        f"Simulated {len(world.ratings):,} ratings over {days} days "
        f"({sum(1 for lb in world.truth if lb.kind == 'honest'):,} honest) in {t_sim:.1f} s."
    )

    with open_app(settings) as app:
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
        for label, item in zip(
            world.truth, app.hook.validate_stream(world.ratings, replay=True), strict=True
        ):
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
        naive = _naive_scores(world, app.core.rubric)
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
        prog = _program()
        echo("Explore it:")
        echo(f"  {prog} review list --home {home}              # held ratings and window cases")
        echo(f"  {prog} report --home {home} --by staff")
        echo(f"  {prog} export ratings --home {home} -o ratings.csv")
        echo(f"  {prog} ledger verify --home {home}")
        return {"summary": summary.as_dict(), "traffic": rows, "report": report}


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


def _naive_scores(world: Any, rubric: Any) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for obj in world.ratings:
        scores = obj["scores"]
        sums[obj["window_id"]].append(rubric.composite(scores))
    return {w: sum(v) / len(v) for w, v in sums.items()}
