"""Evaluate detection end to end on simulated worlds with ground truth.

For each world: simulate, register the venues, run every rating through the real
validation hook (SQLite ledger, in-process limiter, replay at each rating's own
``submitted_at``, like ``integrity demo``), then run ``integrity detect``'s service
and read the statuses back. Reports per traffic kind the share not counted (hook +
detect), honest ratings not counted (overall, via hall Wi-Fi, via kiosks), precision
of exclusion, whether every coerced window was flagged as a case, and the distortion
removed: 1 - MAE(counted window scores vs honest truth) / MAE(all ratings counted vs
honest truth).

Worlds are split (``--split``): tuning worlds, looked at while building and tuning the
detectors (seeds 1-5, 21-23, ``changed_world(9)`` and ``changed_world_b(29)``: all but
seeds 1-2 were the held-out worlds of earlier rounds; once their results had been looked
at they became tuning worlds), and held-out worlds nobody looked at while tuning (seeds
31-33 and ``changed_world_b(39)``, a second world with changed parameters, fresh in the
round that added the ring detector). Held-out worlds are meant to be run once, after a
round's changes are final; when a round has looked at them, fresh seeds replace them.

Besides the simulator's attacks, each world gets ``flood_hour`` campaigns injected here
(one for each unit of the world's flood intensity, rounded): one address sends 200-400
all-5 ratings in an hour of opening time to one window, a new device id each time,
invented tickets, no ``served_at`` and no staff: what the rate limits admit at first
and between refusals is what detection must still catch.

    .venv/bin/python bench/eval_detect.py                       # every world of the split
    .venv/bin/python bench/eval_detect.py --split tune          # tuning worlds only
    .venv/bin/python bench/eval_detect.py --seeds 5 --no-changed --json out.json
    .venv/bin/python bench/eval_detect.py --seeds --no-changed --changed-b 29  # one world
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bootstrap import init_instance, open_app  # noqa: E402
from integrity.adapters import tables as t  # noqa: E402
from integrity.app import App, Settings  # noqa: E402
from integrity.model import DEFAULT_RUBRIC  # noqa: E402
from integrity.venues import pseudonymise_venues  # noqa: E402
from simulation import Label, WorldConfig, simulate  # noqa: E402

TUNE_SEEDS = (1, 2, 3, 4, 5, 21, 22, 23)
TUNE_CHANGED = 9  # changed_world(9)
TUNE_CHANGED_B = 29  # changed_world_b(29)
HOLDOUT_SEEDS = (31, 32, 33)
HOLDOUT_CHANGED = 39  # changed_world_b(39)
ATTACKS = (
    "flood",
    "flood_hour",
    "device_farm",
    "replay_duplicate",
    "brushing_slow",
    "self_rating",
    "coerced",
    "bombing",
)


def changed_world(seed: int) -> WorldConfig:
    """A world unlike the tuning ones: more halls, fewer windows each, more traffic,
    stronger and more frequent attacks, lower participation, a public holiday."""
    from datetime import date

    return WorldConfig(
        seed=seed,
        halls=5,
        windows_per_hall=4,
        honest_ratings=40_000,
        participation=0.7,
        two_staff_share=0.6,
        closed_dates=(date(2026, 10, 5), date(2026, 10, 6)),
        flood=1.5,
        device_farm=2.0,
        brushing_slow=2.0,
        self_rating=1.5,
        coerced=1.5,
        bombing=2.0,
        replay=1.5,
    )


def changed_world_b(seed: int) -> WorldConfig:
    """A second world unlike the tuning ones, unlike :func:`changed_world` too: four halls
    of five windows, open Monday to Friday only, lower participation, fewer staff pairs,
    a closed day mid-month, twice the coerced and self-rating campaigns."""
    from datetime import date

    return WorldConfig(
        seed=seed,
        halls=4,
        windows_per_hall=5,
        honest_ratings=30_000,
        participation=0.6,
        open_weekdays=(0, 1, 2, 3, 4),
        two_staff_share=0.3,
        closed_dates=(date(2026, 10, 14),),
        flood=1.0,
        device_farm=1.5,
        brushing_slow=1.5,
        self_rating=2.0,
        coerced=2.0,
        bombing=1.5,
        replay=1.0,
    )


def split_worlds(
    split: str, seeds: list[int] | None, changed: bool, changed_b: int | None = None
) -> list[tuple[str, WorldConfig]]:
    """The worlds to run: ``seeds`` (named ``seedN``) or the ``split``'s (tune / holdout /
    all); with ``changed_b``, ``changed_world_b(changed_b)`` (named ``changed-bN``) too."""
    worlds: list[tuple[str, WorldConfig]] = []
    if changed_b is not None:
        worlds.append((f"changed-b{changed_b}", changed_world_b(changed_b)))
    if seeds is not None:
        worlds += [(f"seed{s}", WorldConfig(seed=s)) for s in seeds]
        if changed:
            worlds.append((f"changed{TUNE_CHANGED}", changed_world(TUNE_CHANGED)))
        return worlds
    if split in ("tune", "all"):
        worlds += [(f"tune{s}", WorldConfig(seed=s)) for s in TUNE_SEEDS]
        if changed:
            worlds.append((f"changed{TUNE_CHANGED}", changed_world(TUNE_CHANGED)))
            worlds.append((f"changed-b{TUNE_CHANGED_B}", changed_world_b(TUNE_CHANGED_B)))
    if split in ("holdout", "all"):
        worlds += [(f"hold{s}", WorldConfig(seed=s)) for s in HOLDOUT_SEEDS]
        if changed:
            worlds.append((f"hold-changed{HOLDOUT_CHANGED}", changed_world_b(HOLDOUT_CHANGED)))
    return worlds


@dataclass
class Built:
    """A simulated world run through the hook: where its instance is, and its truth."""

    name: str
    home: Path
    kinds: np.ndarray  # per input line: label kind
    rating_ids: np.ndarray  # per input line: the rating id its decision names
    windows: np.ndarray  # per input line: window id
    composites: np.ndarray  # per input line
    targets: list[str | None]  # per input line: attack's target window
    honest_truth: dict[str, float]
    coerced_windows: set[str]


def hour_floods(cfg: WorldConfig, windows: list[str]) -> list[tuple[dict[str, Any], Label]]:
    """The injected ``flood_hour`` campaigns of a world (see the module docstring)."""
    rng = np.random.default_rng([cfg.seed, 60_60])
    out: list[tuple[dict[str, Any], Label]] = []
    for c in range(max(1, round(cfg.flood))):
        w = windows[int(rng.integers(0, len(windows)))]
        day = int(rng.integers(0, cfg.days))
        start = cfg.start + timedelta(days=day, seconds=float(rng.uniform(9 * 3600, 16 * 3600)))
        k = int(rng.integers(200, 401))
        offsets = np.sort(rng.uniform(0, 3600, k))
        ip = f"198.18.{c}.{int(rng.integers(1, 255))}"
        label = Label("flood_hour", f"flood_hour-{c + 1}", w, None)
        for i, off in enumerate(offsets.tolist()):
            scores = {d: 5 for d in DEFAULT_RUBRIC.dimensions}
            if rng.random() < 0.15:
                scores[DEFAULT_RUBRIC.dimensions[int(rng.integers(0, 5))]] = 4
            doc = {
                "ticket_id": f"HF-{cfg.seed}-{c}-{i:04d}",
                "window_id": w,
                "channel": "app",
                "submitted_at": (start + timedelta(seconds=off)).isoformat(),
                "scores": scores,
                "ip": ip,
                "device_id": f"hf-{int(rng.integers(0, 2**62)):x}",
            }
            out.append((doc, label))
    return out


def _with_injected(world: Any, cfg: WorldConfig) -> tuple[list[dict[str, Any]], list[Label]]:
    """The world's ratings and labels with the injected campaigns, in submitted order."""
    windows = sorted({r["window_id"] for r in world.ratings})
    rows = list(zip(world.ratings, world.truth, strict=True)) + hour_floods(cfg, windows)
    at = [datetime.fromisoformat(r["submitted_at"]) for r, _ in rows]
    order = sorted(range(len(rows)), key=lambda i: at[i])
    return [rows[i][0] for i in order], [rows[i][1] for i in order]


def build(name: str, cfg: WorldConfig, base: Path, *, fresh: bool = False) -> Built:
    """Simulate ``cfg`` and ingest it through the hook into ``base/name`` (cached)."""
    home = base / name
    meta = home / "truth-v2.npz"  # v2: with the injected hour floods
    world = simulate(cfg)
    ratings, truth = _with_injected(world, cfg)
    if fresh and home.exists():
        shutil.rmtree(home)
    if not meta.exists():
        if home.exists():
            shutil.rmtree(home)
        settings = Settings.resolve(home=home, env={})
        init_instance(settings)
        with open_app(settings) as app:
            pv = pseudonymise_venues(world.venues, app.pseudonymiser)
            app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), "eval")
            app.hook.reload()
            ids = []
            for item in app.hook.validate_stream(ratings, replay=True, chunk=2000):
                assert item.decision is not None
                ids.append(item.decision.rating_id)
        np.savez(meta, rating_ids=np.array(ids, dtype=np.int64))
    ids = np.load(meta)["rating_ids"]
    kinds = np.array([lb.kind for lb in truth])
    targets = [lb.target_window for lb in truth]
    windows = np.array([r["window_id"] for r in ratings])
    composites = np.array([DEFAULT_RUBRIC.composite(r["scores"]) for r in ratings])
    return Built(
        name,
        home,
        kinds,
        ids,
        windows,
        composites,
        targets,
        world.honest_window_scores(),
        set(world.coerced_windows),
    )


def open_built(b: Built, rules_text: str | None = None) -> App:
    """Open a built world's instance with ``rules_text`` (default: the built-in rule set) active."""
    from rules.ruleset import default_ruleset_text

    settings = Settings.resolve(home=b.home, env={})
    init_instance(settings, rules_text=rules_text or default_ruleset_text())
    return open_app(settings)


def reset_detection(app: App) -> None:
    """Undo a previous detect run on a cached instance (eval only: never on a real ledger)."""
    from rules import tables as rt

    with app.ledger.engine.begin() as conn:
        ev = t.events
        held = conn.execute(
            sa.select(ev.c.rating_id).where(ev.c.actor == "detector", ev.c.rating_id.is_not(None))
        ).all()
        ids = [r[0] for r in held]
        for tbl in rt.metadata_tables():
            conn.execute(tbl.delete())
        for name in ("risk_scores", "risk_blocks"):
            if hasattr(t, name):
                conn.execute(getattr(t, name).delete())
        conn.execute(
            ev.delete().where(sa.or_(ev.c.actor == "detector", ev.c.kind == "risk.scored"))
        )
        for lo in range(0, len(ids), 500):
            part = ids[lo : lo + 500]
            # back to the decision event's status
            rows = conn.execute(
                sa.select(ev.c.rating_id, ev.c.status, ev.c.reasons, ev.c.event_id).where(
                    ev.c.rating_id.in_(part), ev.c.kind == "decision"
                )
            ).all()
            for rid, status, reasons, eid in rows:
                conn.execute(
                    t.rating_status.update()
                    .where(t.rating_status.c.rating_id == rid)
                    .values(
                        status=status,
                        reasons=";".join(json.loads(reasons)),
                        last_event_id=eid,
                        version=1,
                    )
                )
        conn.execute(t.rating_status.update().values(risk=0.0))


def evaluate(b: Built, app: App) -> dict[str, Any]:
    """Metrics for one world after detection (statuses read from the ledger)."""
    with app.ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.rating_status.c.rating_id, t.rating_status.c.status, t.rating_status.c.reasons
            )
        ).all()
        cases = {
            r[0].split(":", 2)[2]
            for r in conn.execute(
                sa.select(t.events.c.subject).where(t.events.c.subject.like("case:window:%"))
            ).all()
        }
        venue: Counter[str] = Counter()
    status = {rid: st for rid, st, _ in rows}
    reasons = {rid: rs for rid, _, rs in rows}
    counted = np.array([status[int(r)] == "accepted" for r in b.rating_ids])
    by_kind: dict[str, dict[str, Any]] = {}
    why: dict[str, Counter[str]] = defaultdict(Counter)
    for kind in sorted(set(b.kinds.tolist())):
        m = b.kinds == kind
        by_kind[kind] = {"ratings": int(m.sum()), "not_counted": float((~counted[m]).mean())}
        for rid in b.rating_ids[m & ~counted].tolist():
            for code in (reasons[int(rid)] or "").split(";"):
                if code:
                    why[kind][code] += 1
    honest = b.kinds == "honest"
    # Honest ratings via hall Wi-Fi / kiosks: read the crowd flags from the ledger rows.
    with app.ledger.engine.connect() as conn:
        reg = app.ledger.venue_registry()
        rws = conn.execute(
            sa.select(
                t.ratings.c.rating_id,
                t.ratings.c.ip_hash,
                t.ratings.c.prefix_hash,
                t.ratings.c.device_hash,
            )
        ).all()
    wifi = {
        rid for rid, ip, pf, dev in rws if reg.venue_of_address(ip, pf) and reg.kiosk(dev) is None
    }
    kio = {rid for rid, _, _, dev in rws if reg.kiosk(dev) is not None}
    is_wifi = np.array([int(r) in wifi for r in b.rating_ids])
    is_kiosk = np.array([int(r) in kio for r in b.rating_ids])
    excluded = ~counted
    attack = ~np.isin(b.kinds, ["honest", "identical_retry"])
    precision = float((excluded & attack).sum() / max(1, excluded.sum()))
    # Distortion: window means of counted ratings vs honest truth, vs all counted.
    comp = b.composites
    mae_c, mae_all = [], []
    for w, truth in b.honest_truth.items():
        m = b.windows == w
        uniq = m & (b.kinds != "identical_retry")
        allv = comp[uniq]
        cv = comp[uniq & counted]
        if len(allv):
            mae_all.append(abs(allv.mean() - truth))
        mae_c.append(abs(cv.mean() - truth) if len(cv) else abs(truth))
    removed = 1 - float(np.mean(mae_c)) / max(1e-12, float(np.mean(mae_all)))
    return {
        "world": b.name,
        "by_kind": by_kind,
        "reasons": {k: dict(v.most_common(4)) for k, v in why.items()},
        "honest_not_counted": float(excluded[honest].mean()),
        "honest_not_counted_wifi": float(excluded[honest & is_wifi].mean()),
        "honest_not_counted_kiosk": float(excluded[honest & is_kiosk].mean()),
        "precision": precision,
        "coerced_windows": sorted(b.coerced_windows),
        "coerced_flagged": sorted(b.coerced_windows & cases),
        "cases": sorted(cases),
        "all_coerced_flagged": b.coerced_windows <= cases,
        "distortion_removed": removed,
        "mae_counted": float(np.mean(mae_c)),
        "mae_all": float(np.mean(mae_all)),
        "_venue": dict(venue),
    }


def run_detect(app: App) -> dict[str, Any]:
    from rules.detectors.service import DetectService

    svc = DetectService.from_app(app)
    t0 = time.perf_counter()
    report = svc.run(full=True)
    return {"seconds": time.perf_counter() - t0, "held": report.held, "flags": report.flag_counts}


def table(results: list[dict[str, Any]]) -> str:
    kinds = ("honest", *ATTACKS, "identical_retry")
    lines = []
    head = f"{'world':<15}" + "".join(f"{k[:10]:>11}" for k in kinds)
    head += f"{'hon.wifi':>9}{'hon.kiosk':>10}{'precision':>10}{'coerced':>8}{'distort.':>9}"
    lines.append(head)
    for r in results:
        row = f"{r['world']:<15}"
        for k in kinds:
            v = r["by_kind"].get(k)
            row += f"{(v['not_counted'] * 100):>10.1f}%" if v else f"{'-':>11}"
        row += f"{r['honest_not_counted_wifi'] * 100:>8.2f}%{r['honest_not_counted_kiosk'] * 100:>9.2f}%"
        row += f"{r['precision'] * 100:>9.1f}%"
        row += f"{'yes' if r['all_coerced_flagged'] else 'NO':>8}"
        row += f"{r['distortion_removed'] * 100:>8.1f}%"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=Path, default=Path("/tmp/eval_detect"))
    p.add_argument(
        "--split",
        choices=("all", "tune", "holdout"),
        default="all",
        help="tuning worlds, held-out worlds or both (default: both)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        help="seeds of default worlds instead of the split's (with changed9 unless --no-changed)",
    )
    p.add_argument("--no-changed", action="store_true", help="skip the changed-parameter worlds")
    p.add_argument(
        "--changed-b",
        type=int,
        metavar="SEED",
        help="also run changed_world_b(SEED) (with --seeds and no seed: only it)",
    )
    p.add_argument("--fresh", action="store_true", help="rebuild cached ledgers")
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--rules", type=Path, help="rule set TOML to detect with (default: the built-in one)"
    )
    args = p.parse_args(argv)
    worlds = split_worlds(args.split, args.seeds, not args.no_changed, args.changed_b)
    results = []
    for name, cfg in worlds:
        t0 = time.perf_counter()
        b = build(name, cfg, args.base, fresh=args.fresh)
        print(f"{name}: built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.build_only:
            continue
        rules = args.rules.read_text(encoding="utf-8") if args.rules else None
        with open_built(b, rules) as app:
            reset_detection(app)
            info = run_detect(app)
            res = evaluate(b, app)
        res["detect"] = info
        results.append(res)
        print(
            f"{name}: detect {info['seconds']:.1f} s, held {info['held']}, flags {info['flags']}",
            file=sys.stderr,
        )
    if results:
        print(table(results))
        for r in results:
            print(f"\n{r['world']}: cases {r['cases']} (coerced {r['coerced_windows']})")
            for k, v in r["reasons"].items():
                print(f"  {k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
