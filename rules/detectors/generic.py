"""Soft signals that never hold a rating on their own: pyod over behaviour features, REV2
rater fairness (``rules/detectors/fairness.py``), and the prior that ranks every rating
below the hold line (:func:`prior_signal`: how briefly its device was seen, with its
fairness).

On real labelled data generic outlier detectors score near chance, so their output
is only one input to :mod:`rules.detectors.combine`: a rating is held on them only
together with other evidence. Both map their raw scores to the population's empirical
CDF and give risk only to the top ``tail`` share, linearly up to ``weight`` (< 0.5, the
hold line), so the signal says "among the most unusual", never more.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pandas as pd

from rules.detectors.base import Signal
from rules.detectors.features import Frame, nunique_by


def _tail_risk(raw: np.ndarray, tail: float, weight: float) -> np.ndarray:
    """Empirical CDF of ``raw`` mapped to ``weight * (cdf - (1 - tail)) / tail`` in the top tail."""
    if len(raw) == 0:
        return raw
    ranks = pd.Series(raw).rank(method="average", pct=True).to_numpy()
    return weight * np.clip((ranks - (1 - tail)) / tail, 0.0, 1.0)


def device_features(X: Frame) -> pd.DataFrame:
    """Per non-kiosk device: volume, spread, skew, timing (BIRDNEST-like) features."""
    df = X.frame
    d = df[~df["kiosk"]]
    if d.empty:
        return pd.DataFrame()
    d = d.sort_values(["dev", "submitted_s"])
    gap = d.groupby("dev")["submitted_s"].diff()
    d = d.assign(
        log_gap=np.log10(gap.clip(lower=1)),
        log_delay=np.log10(d["delay_s"].clip(lower=1)),
        night=(d["hour"] < 7) | (d["hour"] >= 21),
    )
    f = d.groupby("dev").agg(
        n=("rating_id", "size"),
        mean=("composite", "mean"),
        sd=("composite", "std"),
        top=("top", "mean"),
        low=("low", "mean"),
        venue=("venue", "mean"),
        night=("night", "mean"),
        log_gap=("log_gap", "median"),
        log_delay=("log_delay", "median"),
    )
    f["windows"] = nunique_by(d, ["dev"], "win")
    f["days"] = nunique_by(d, ["dev"], "day")
    top_win = d.groupby(["dev", "win"]).size().groupby(level=0).max()
    f["focus"] = top_win.reindex(f.index).to_numpy() / f["n"]
    f["n"] = np.log1p(f["n"])
    return f.fillna({"sd": 0.0, "log_gap": 7.0, "log_delay": 3.0})


def window_day_features(X: Frame) -> pd.DataFrame:
    """Per window x day: volume, straight-lining, speed, low share, crowd share, device reuse."""
    df = X.frame
    d = df.assign(fast=(df["delay_s"] <= 180) & (df["delay_s"] >= -60))
    f = d.groupby(["win", "day"]).agg(
        n=("rating_id", "size"),
        top=("top", "mean"),
        fast=("fast", "mean"),
        low=("low", "mean"),
        crowd=("crowd", "mean"),
    )
    f["reuse"] = 1 - nunique_by(d, ["win", "day"], "dev").reindex(f.index).to_numpy() / f["n"]
    f["n"] = np.log1p(f["n"])
    return f


def _pyod_scores(features: pd.DataFrame, method: str) -> np.ndarray:
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest

    x = features.to_numpy(dtype=float)
    if len(x) < 20:
        return np.zeros(len(x))
    model: Any
    if method == "hbos":
        model = HBOS()
    elif method == "iforest":
        model = IForest(random_state=0, n_estimators=100)
    else:
        model = ECOD()
    with warnings.catch_warnings():
        # ECOD's skewness of a constant feature (e.g. no night ratings at all) warns; harmless
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(x)
    return np.asarray(model.decision_scores_, dtype=float)


def device_risk_pyod(
    X: Frame, *, method: str = "ecod", tail: float = 0.02, weight: float = 0.3, min_ratings: int = 3
) -> tuple[pd.Series, pd.Series]:
    """pyod risk per device code and per (window, day); see :func:`pyod_signal`."""
    dev = device_features(X)
    r_dev = pd.Series(dtype=float)
    if not dev.empty:
        dev = dev[np.expm1(dev["n"]) >= min_ratings]
        r_dev = pd.Series(_tail_risk(_pyod_scores(dev, method), tail, weight), index=dev.index)
    wd = window_day_features(X)
    r_wd = pd.Series(dtype=float)
    if not wd.empty:
        r_wd = pd.Series(_tail_risk(_pyod_scores(wd, method), tail, weight), index=wd.index)
    return r_dev, r_wd


def pyod_signal(
    X: Frame,
    *,
    method: str = "ecod",
    tail: float = 0.02,
    weight: float = 0.3,
    min_ratings: int = 3,
    parts: tuple[pd.Series, pd.Series] | None = None,
) -> Signal:
    """pyod over per-device and per-window-day features; risk per rating (max of the two).

    Devices with fewer than ``min_ratings`` ratings are not scored (nothing to see).
    ``parts`` are precomputed :func:`device_risk_pyod` results (computed elsewhere).
    """
    df = X.frame
    r_dev, r_wd = (
        parts
        if parts is not None
        else device_risk_pyod(X, method=method, tail=tail, weight=weight, min_ratings=min_ratings)
    )
    risk = np.zeros(len(df))
    if len(r_dev):
        risk = np.maximum(risk, r_dev.reindex(df["dev"]).fillna(0.0).to_numpy())
    if len(r_wd):
        key = pd.MultiIndex.from_frame(df[["win", "day"]])
        risk = np.maximum(risk, r_wd.reindex(key).fillna(0.0).to_numpy())
    return Signal(
        "pyod",
        pd.Series(risk, index=df["rating_id"].to_numpy()),
        {"method": method, "tail": tail, "weight": weight},
    )


def device_suspicion(X: Frame) -> pd.Series:
    """REV2 suspicion (1 - fairness, in [0, 1]) of every device (not kiosk) code, from the
    ratings it gave to windows; the rubric's scale is mapped to 1..5 first."""
    from rules.detectors.fairness import fairness_scores, scores_to_unit

    df = X.frame
    d = df[~df["kiosk"]]
    if d.empty:
        return pd.Series(dtype=float)
    lo, hi = float(X.rubric.scale_min), float(X.rubric.scale_max)
    five = 1.0 + 4.0 * (d["composite"].to_numpy(dtype=float) - lo) / (hi - lo)
    edges = pd.DataFrame(
        {
            "rater": d["dev"].to_numpy(),
            "ratee": d["win"].to_numpy(),
            "rating": scores_to_unit(np.clip(five, 1.0, 5.0)),
            "time": d["submitted_s"].to_numpy(),
        }
    )
    return fairness_scores(edges)


def device_risk_fairness(
    X: Frame,
    *,
    tail: float = 0.02,
    weight: float = 0.3,
    min_ratings: int = 3,
    suspicion: pd.Series | None = None,
) -> pd.Series:
    """REV2 suspicion per device code mapped to risk; see :func:`fairness_signal`."""
    df = X.frame
    d = df[~df["kiosk"]]
    if d.empty:
        return pd.Series(dtype=float)
    sus = device_suspicion(X) if suspicion is None else suspicion
    n = d.groupby("dev").size()
    sus = sus[n.reindex(sus.index).fillna(0).to_numpy() >= min_ratings]
    return pd.Series(_tail_risk(sus.to_numpy(), tail, weight), index=sus.index)


def device_prior(X: Frame, suspicion: pd.Series | None = None) -> pd.Series:
    """Where each device (not kiosk) code ranks among all devices by two signals of the
    ratings it gave, in [0, 1] (1 = the most suspicious): how briefly it was seen (the
    span from its first to its last rating; a source seen once or for minutes is new)
    and its REV2 suspicion. New sources are common (every one-time citizen) and so are
    dissenters; a source that is both is not: the product of the two percentile ranks
    (high only when both are), ranked again, so the result is uniform over devices: a
    rank (in hundredths), not a probability.
    """
    df = X.frame
    d = df[~df["kiosk"]]
    if d.empty:
        return pd.Series(dtype=float)
    t = d.groupby("dev")["submitted_s"].agg(["min", "max"])
    brief = -np.log1p((t["max"] - t["min"]).clip(lower=0.0))
    sus = device_suspicion(X) if suspicion is None else suspicion
    both = brief.rank(pct=True) * sus.reindex(t.index).rank(pct=True).fillna(0.5)
    # in hundredths: a later run over more data moves few devices across a step, so the
    # ledger records few risk changes
    return np.round(both.rank(pct=True) * 100) / 100


def prior_signal(X: Frame, *, weight: float = 0.4, part: pd.Series | None = None) -> Signal:
    """Risk below the hold line for every rating: ``weight`` times its device's
    :func:`device_prior` (kiosk ratings: 0). Ranks; never holds (see combine)."""
    df = X.frame
    prior = device_prior(X) if part is None else part
    out = prior.reindex(df["dev"]).fillna(0.0).to_numpy() * weight if len(prior) else None
    risk = np.zeros(len(df)) if out is None else np.where(df["kiosk"].to_numpy(), 0.0, out)
    return Signal("prior", pd.Series(risk, index=df["rating_id"].to_numpy()), {"weight": weight})


def fairness_signal(
    X: Frame,
    *,
    tail: float = 0.02,
    weight: float = 0.3,
    min_ratings: int = 3,
    part: pd.Series | None = None,
) -> Signal:
    """REV2 suspicion of each device (rater) from the ratings it gave to windows (ratees).

    Only devices with at least ``min_ratings`` ratings get risk; the top ``tail`` of
    them get up to ``weight``.
    """
    df = X.frame
    risk = (
        part
        if part is not None
        else device_risk_fairness(X, tail=tail, weight=weight, min_ratings=min_ratings)
    )
    out = risk.reindex(df["dev"]).fillna(0.0).to_numpy() if len(risk) else np.zeros(len(df))
    return Signal(
        "fairness",
        pd.Series(out, index=df["rating_id"].to_numpy()),
        {"tail": tail, "weight": weight, "min_ratings": min_ratings},
    )


# -- running the soft signals (and some detectors) beside the others ----------------------


def soft_parts(
    frame: Frame,
    pyod_opts: dict[str, Any] | None,
    fair_opts: dict[str, Any] | None,
    prior_opts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the soft signals need computed from ``frame``: per device (and window-day)
    risks of pyod and fairness, the prior; small, so cheap to hand back from a worker."""
    out: dict[str, Any] = {}
    if pyod_opts is not None:
        out["pyod"] = device_risk_pyod(frame, **pyod_opts)
    sus = device_suspicion(frame) if fair_opts is not None or prior_opts is not None else None
    if fair_opts is not None:
        out["fairness"] = device_risk_fairness(frame, **fair_opts, suspicion=sus)
    if prior_opts is not None:
        out["prior"] = device_prior(frame, suspicion=sus)
    return out


def soft_signals(
    frame: Frame,
    parts: dict[str, Any],
    pyod_opts: dict[str, Any] | None,
    fair_opts: dict[str, Any] | None,
    prior_opts: dict[str, Any] | None = None,
) -> list[Signal]:
    """The soft signals of ``frame`` from their :func:`soft_parts`."""
    out = []
    if "pyod" in parts:
        out.append(pyod_signal(frame, parts=parts["pyod"], **(pyod_opts or {})))
    if "fairness" in parts:
        out.append(fairness_signal(frame, part=parts["fairness"], **(fair_opts or {})))
    if "prior" in parts:
        out.append(prior_signal(frame, part=parts["prior"], **(prior_opts or {})))
    return out


def _warm(method: str | None) -> bool:
    """Import (and compile) what the worker's tasks need while the parent reads."""
    if method is not None:
        from pyod.models.ecod import ECOD  # noqa: F401  (pyod's import and numba JIT)

        _pyod_scores(pd.DataFrame(np.random.default_rng(0).random((32, 3))), method)
    import scipy.stats  # noqa: F401  (the detectors' tests, imported on first use)

    import rules.detectors.fairness  # noqa: F401

    return True


class _Claims:
    """Which of the detectors either process may fit were taken: a counter both
    processes of a run share (created before the fork, so the worker inherits it),
    each taking the next one when it is free."""

    def __init__(self, shared: bool) -> None:
        if shared:
            import multiprocessing as mp

            self._value: Any = mp.get_context("fork").Value("i", 0)
            self._lock: Any = self._value.get_lock()
        else:
            self._value, self._lock = _Count(), threading.Lock()

    def take(self, n: int) -> int | None:
        """The index of the next one of ``n`` nobody took yet (``None``: all taken)."""
        with self._lock:
            i = int(self._value.value)
            if i >= n:
                return None
            self._value.value = i + 1
            return i


class _Count:
    value = 0


#: The claims of the run whose worker is being forked (the child finds them here).
_CLAIMS: _Claims | None = None
#: The log of the run whose worker is being forked (the child seals with it, on
#: connections of its own once it has adopted it: see :meth:`Worker.seal`).
_LOG: Any = None
_LOG_ADOPTED = False


def _work(
    frame: Frame,
    soft: tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None],
    detectors: list[Any],
    total: int,
    either: list[Any] | None = None,
    claims: _Claims | None = None,
) -> tuple[dict[str, Any], dict[str, tuple[float, list[Any], float]]]:
    """A worker's share of a run: the soft signals' parts, then its detectors, then
    those of ``either`` the parent has not taken (each fitted on the same frame:
    threshold, flags, seconds)."""
    import time

    t0 = time.perf_counter()
    parts = soft_parts(frame, *soft) if any(o is not None for o in soft) else {}
    parts["seconds"] = time.perf_counter() - t0
    fitted: dict[str, tuple[float, list[Any], float]] = {}
    for det in _and_claimed(detectors, either or [], claims):
        t0 = time.perf_counter()
        det.fit(frame, total_ratings=total)
        fitted[det.name] = (det.threshold_, det.flags(frame), time.perf_counter() - t0)
    try:
        import resource

        parts["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:  # not on this platform
        pass
    return parts, fitted


def _and_claimed(mine: list[Any], either: list[Any], claims: _Claims | None) -> Iterator[Any]:
    """``mine``, then each of ``either`` this process claims (all of them without
    ``claims``), one at a time, until none is left."""
    yield from mine
    if claims is None:
        yield from either
        return
    while (i := claims.take(len(either))) is not None:
        yield either[i]


def _work_piped(
    fd: int,
    soft: tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None],
    detectors: list[Any],
    total: int,
    either: list[Any] | None = None,
) -> tuple[dict[str, Any], dict[str, tuple[float, list[Any], float]]]:
    """:func:`_work` on the frame the parent streams into the pipe ``fd`` (the claims
    inherited from the parent)."""
    import pickle

    with os.fdopen(fd, "rb", buffering=1 << 20) as pipe:
        frame = pickle.load(pipe)
    return _work(frame, soft, detectors, total, either, _CLAIMS)


def _seal(now: Any) -> int:
    """In the worker: seal what is committed into the inherited log (:data:`_LOG`), on
    connections of this process's own; how many events."""
    global _LOG_ADOPTED
    from integrity.log import adopt, seal_adopted

    if not _LOG_ADOPTED:
        adopt(_LOG)
        _LOG_ADOPTED = True
    return seal_adopted(now)


class Worker:
    """A second process for a detection run (two cores: the run's work in two halves).

    Forked by :meth:`start` before the ledger is read, while the process is small: its
    memory is then the imports it shares with the parent plus what it is handed, not a
    copy of everything the parent has read. It imports pyod (and compiles its numba
    code) while the parent reads. :meth:`submit` hands it the frame (pickled: its
    columns, the categories once) and its share of the work (:func:`_work`). Where
    ``fork`` is not available it runs the same work in process. Use as a context
    manager.

    With ``log`` (the instance's :class:`~integrity.log.MerkleLog`), the process can
    also seal what the run has committed while the run goes on writing (:meth:`seal`):
    it was forked while the run was small, so the run's own memory is not shared with
    it (a process forked later would make every page the run then writes a copy).
    """

    def __init__(
        self, *, enabled: bool = True, pyod_method: str | None = None, log: Any = None
    ) -> None:
        self.enabled = enabled
        self.pyod_method = pyod_method
        self.log = log
        self._sealing: Any = None
        self._pool: Any = None
        self._future: Any = None
        self._args: tuple[Any, ...] | None = None
        self._pipe: tuple[int, int] | None = None
        self._feeder: threading.Thread | None = None
        self._claims = _Claims(shared=False)
        self._either: list[Any] = []

    def start(self) -> Worker:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if self.enabled and self._pool is None and "fork" in mp.get_all_start_methods():
            # the frame goes through a pipe the worker inherits, pickled straight into it
            # (no copy of the whole payload in either process); so do the claims
            global _CLAIMS, _LOG
            self._claims = _CLAIMS = _Claims(shared=True)
            _LOG = self.log
            self._pipe = os.pipe()
            self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
            # with fork, submit starts the process at once: the worker has its end now
            self._pool.submit(_warm, self.pyod_method)
            _LOG = None  # the worker has it; this process keeps no reference to it
            os.close(self._pipe[0])
        return self

    def __enter__(self) -> Worker:
        return self.start()

    def submit(
        self,
        frame: Frame,
        soft: tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None],
        detectors: list[Any],
        total: int,
        either: list[Any] | None = None,
    ) -> None:
        """Hand the worker the frame, the soft signals' options and its ``detectors``;
        then it fits those of ``either`` the parent has not claimed (:meth:`claimed`)."""
        self._either = list(either or [])
        if self._pool is not None and self._pipe is not None:
            read_end, write_end = self._pipe
            self._pipe = None
            self._future = self._pool.submit(
                _work_piped, read_end, soft, detectors, total, self._either
            )

            def feed() -> None:
                import pickle

                with os.fdopen(write_end, "wb", buffering=1 << 20) as pipe:
                    pickle.dump(frame, pipe, protocol=5)

            self._feeder = threading.Thread(target=feed, name="detect-worker-feed", daemon=True)
            self._feeder.start()
        else:
            self._args = (frame, soft, detectors, total, self._either, self._claims)

    def claimed(self) -> Iterator[Any]:
        """The detectors of ``either`` (see :meth:`submit`) this process takes, one at a
        time while the worker has not taken them (all of them without a worker)."""
        return _and_claimed([], self._either, self._claims)

    def result(self) -> tuple[dict[str, Any], dict[str, tuple[float, list[Any], float]]]:
        if self._future is not None:
            return cast(
                tuple[dict[str, Any], dict[str, tuple[float, list[Any], float]]],
                self._future.result(),
            )
        assert self._args is not None, "submit first"
        return _work(*self._args)

    def can_seal(self) -> bool:
        """Whether :meth:`seal` seals in the worker (a log given, the process forked)."""
        return self.log is not None and self._pool is not None

    def seal(self, now: Any) -> None:
        """Seal in the worker what is committed now, after its share of the analysis
        (:meth:`sealed` waits for it); nothing where :meth:`can_seal` is false."""
        if self.can_seal():
            self._sealing = self._pool.submit(_seal, now)

    def sealed(self) -> int | None:
        """How many events :meth:`seal` sealed (``None``: none was asked for)."""
        if self._sealing is None:
            return None
        future, self._sealing = self._sealing, None
        return int(future.result())

    def close(self) -> None:
        if self._pipe is not None:  # started, never handed a frame
            os.close(self._pipe[1])
            self._pipe = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._feeder is not None:
            self._feeder.join(timeout=5)
            self._feeder = None

    def __exit__(self, *exc: object) -> None:
        self.close()
