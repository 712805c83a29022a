"""Row selections and names shared by several detectors (see :func:`rules.detectors.features.prepare`)."""

from __future__ import annotations

import pandas as pd


def not_repeated(df: pd.DataFrame) -> pd.Series:
    """Ratings that are not a repeat of an already rated ticket (never any window's traffic)."""
    return ~df["dup"]


def own_devices(df: pd.DataFrame) -> pd.Series:
    """Ratings from a rater's own device: not a registered kiosk pad, not a repeated ticket."""
    return ~df["kiosk"] & ~df["dup"]


def target_names(df: pd.DataFrame) -> pd.Series:
    """Target code -> staff id, or ``window:<id>`` when no staff is named."""
    first = df.drop_duplicates("tgt")
    staff = first["staff_id"].astype(object)
    name = staff.where(first["stf"] >= 0, "window:" + first["window_id"].astype(str))
    return pd.Series(name.to_numpy(), index=first["tgt"].to_numpy())
