"""``integrity demo``: a simulated month through the real engine, on embedded defaults.

Generates a month for a few halls (honest crowds behind hall Wi-Fi, kiosks, carrier
NAT; returning citizens; and attacks with ground truth), loads the venue registry,
ingests everything through the validation hook, then shows what was stopped and why
and the performance report next to the honest truth.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from integrity.bootstrap import Settings, init_instance, open_app
from integrity.ingest import IngestSummary
from integrity.render import render_to_string
from integrity.reports import performance
from integrity.simulation import WorldConfig, simulate
from integrity.venues import pseudonymise_venues


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
        app.reload_venues()
        echo(
            f"Registered {len(pv.venues)} venues (halls; the SMS/phone gateway when present): "
            f"{len(pv.addresses)} shared-address entries, {len(pv.kiosks)} kiosk pads."
        )

        t0 = time.perf_counter()
        summary = IngestSummary()
        outcome: dict[str, Counter[str]] = defaultdict(Counter)
        reasons: dict[str, Counter[str]] = defaultdict(Counter)
        items = app.hook.validate_stream(world.ratings, replay=True)
        for label, item in zip(world.truth, items, strict=True):
            summary.add(item)
            d = item.decision
            if d is None:  # the simulator only writes valid ratings
                outcome[label.kind]["refused"] += 1
                continue
            outcome[label.kind][d.status.value] += 1
            reasons[label.kind].update(d.reasons)
        t_ing = time.perf_counter() - t0
        head = app.log.checkpoint(app.clock.now())
        echo(
            f"Ingested through the hook in {t_ing:.1f} s ({summary.lines / t_ing:,.0f} ratings/s); "
            f"ledger sealed: {head.checkpoint()}\n"
        )

        rows = []
        for kind in sorted(outcome, key=lambda k: (k != "honest", k)):
            c = outcome[kind]
            total = sum(c.values())
            stopped = total - c.get("accepted", 0)
            rows.append(
                {
                    "traffic": kind,
                    "ratings": total,
                    "accepted": c.get("accepted", 0),
                    "held": c.get("held", 0),
                    "rejected": c.get("rejected", 0),
                    "not_counted": stopped / total if total else 0.0,
                    "top_reasons": ", ".join(f"{r} ({n})" for r, n in reasons[kind].most_common(2)),
                }
            )
        echo("What the hook did with each kind of traffic (rate limits and intake checks only;")
        echo("`integrity detect` catches what stays under them):")
        echo(
            render_to_string(
                rows,
                [
                    "traffic",
                    "ratings",
                    "accepted",
                    "held",
                    "rejected",
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
        echo("Explore it:")
        echo(f"  integrity report --home {home} --by staff")
        echo(f"  integrity export ratings --home {home} -o ratings.csv")
        echo(f"  integrity ledger verify --home {home}")
        return {"summary": summary.as_dict(), "traffic": rows, "report": report}


def _naive_scores(world: Any, rubric: Any) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for obj in world.ratings:
        scores = obj["scores"]
        sums[obj["window_id"]].append(rubric.composite(scores))
    return {w: sum(v) / len(v) for w, v in sums.items()}
