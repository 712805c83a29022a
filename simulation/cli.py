"""A deterministic simulator of a month of citizen ratings, with ground truth.

The simulator's command line, ``python -m simulation --seed 7 --out DIR``: writes
``ratings.jsonl``, ``venues.json`` and ``truth.csv`` (see :mod:`simulation`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from simulation.model import ATTACK_KINDS, WorldConfig
from simulation.world import simulate


def main(argv: list[str] | None = None) -> int:
    """``python -m simulation --seed 7 --out DIR``: write the three files."""
    p = argparse.ArgumentParser(prog="python -m simulation", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory for ratings.jsonl, venues.json, truth.csv",
    )
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--halls", type=int, default=3)
    p.add_argument("--windows-per-hall", type=int, default=6)
    p.add_argument("--honest-ratings", type=int, default=25_000)
    p.add_argument(
        "--benchmark", type=int, metavar="N", help="a world of about N ratings (overrides sizes)"
    )
    p.add_argument(
        "--attack", action="append", default=[], metavar="KIND=X",
        help=f"attack intensity, 0 turns it off; KIND in {', '.join((*ATTACK_KINDS, 'identical_retries'))}",
    )  # fmt: skip
    args = p.parse_args(argv)
    over: dict[str, Any] = {}
    for item in args.attack:
        kind, _, value = item.partition("=")
        if kind not in (*ATTACK_KINDS, "identical_retries"):
            p.error(f"unknown attack kind {kind!r}")
        try:
            over[kind] = float(value)
        except ValueError:
            p.error(f"--attack {item!r}: intensity must be a number")
    try:
        if args.benchmark:
            cfg = WorldConfig.benchmark(args.seed, args.benchmark, days=args.days, **over)
        else:
            cfg = WorldConfig(
                seed=args.seed,
                days=args.days,
                halls=args.halls,
                windows_per_hall=args.windows_per_hall,
                honest_ratings=args.honest_ratings,
                **over,
            )
    except ValueError as err:
        p.error(str(err))
    t0 = time.perf_counter()
    world = simulate(cfg)
    t1 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    world.to_jsonl(args.out / "ratings.jsonl")
    world.venues_json(args.out / "venues.json")
    world.truth_csv(args.out / "truth.csv")
    t2 = time.perf_counter()
    counts = ", ".join(f"{k} {v}" for k, v in world.counts().items() if v)
    print(
        f"{len(world)} ratings ({counts}) simulated in {t1 - t0:.2f} s, written in {t2 - t1:.2f} s to {args.out}"
    )
    return 0
