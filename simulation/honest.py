"""Honest traffic: who rates which ticket, through which channel, from which device and
address, when, with what scores and comments; and the honest identical retries a flaky
network sends twice (labelled ``identical_retry``, not an attack)."""

from __future__ import annotations

import numpy as np

from simulation._batch import _Batch, _empty
from simulation.addresses import _IPK_MAPPED, _IPK_V4, _OFFICE4, _PHONE_GATEWAY, _SMS_GATEWAYS
from simulation.context import _Ctx
from simulation.model import _CH, _KIND, _STYPE_EFFECT, WorldConfig, _composite
from simulation.streams import _stream

_POSITIVE = (
    "服务态度很好，办事效率高",
    "工作人员很耐心，解释得很清楚",
    "一次就办好了，点赞",
    "环境整洁，指引清楚",
    "速度很快，不用跑第二趟",
    "窗口人员主动帮忙填表，谢谢",
    "很满意",
    "好",
)
_NEUTRAL = (
    "还可以",
    "希望多开几个窗口",
    "叫号系统有点乱",
    "停车不方便",
    "材料清单能再简化一些就好了",
)
_NEGATIVE = (
    "排队时间太长了，等了一个多小时",
    "工作人员态度冷淡，问什么都不耐烦",
    "材料要求没说清楚，白跑了两趟",
    "系统老是出故障，办不了",
    "窗口人员中途离开太久",
    "一件事让我去三个窗口",
    "不满意",
)


def _honest_scores(
    rng: np.random.Generator,
    latent: np.ndarray,
    wait_s: np.ndarray,
    att_extra: np.ndarray,
    kiosk: np.ndarray,
) -> np.ndarray:
    """Five correlated 1-5 scores around ``latent`` (score points); long waits cost efficiency."""
    n = len(latent)
    lat = latent + rng.standard_t(5, n) * 0.42
    incident = rng.random(n) < 0.04
    lat[incident] -= rng.uniform(1.2, 3.0, int(incident.sum()))
    dims = lat[:, None] + np.array([0.0, -0.1, 0.1, 0.1, 0.0]) + rng.normal(0.0, 0.5, (n, 5))
    dims[:, 0] += att_extra
    dims[:, 1] -= np.minimum(1.5, np.maximum(0.0, wait_s - 900) / 1800 * 0.3)
    dims[:, 4] = dims[:, :4].mean(axis=1) + rng.normal(0.0, 0.3, n)
    out = np.clip(np.rint(dims), 1, 5)
    straight = rng.random(n) < np.where(kiosk, 0.5, 0.35)
    out[straight] = np.clip(np.rint(lat[straight] + 0.35), 1, 5)[:, None]
    return out.astype(np.int8)


def _pick_comments(rng: np.random.Generator, comp: np.ndarray) -> np.ndarray:
    n = len(comp)
    out = np.full(n, None, dtype=object)
    low = comp < 3.0
    high = comp >= 4.5
    p = np.where(low, 0.35, np.where(high, 0.06, 0.04))
    has = rng.random(n) < p
    for mask, pool in (
        (has & low, _NEGATIVE),
        (has & high, _POSITIVE),
        (has & ~low & ~high, _NEUTRAL),
    ):
        k = int(mask.sum())
        out[mask] = [pool[i] for i in rng.integers(0, len(pool), k).tolist()]
    return out


def _honest(ctx: _Ctx) -> _Batch:
    """Honest ratings of rated tickets (coerced tickets excluded)."""
    cfg = ctx.cfg
    rng = _stream(cfg.seed, "honest")
    T = ctx.T
    hall_t = ctx.win_hall[ctx.t_win]
    rated = rng.random(T) < ctx.hall_participation[hall_t]
    # Channel: the hall's kiosk habit, then QR / app / SMS / web / hotline.
    ks = ctx.hall_kiosk_share[hall_t]
    rest = np.array([0.52, 0.28, 0.10, 0.05, 0.05])
    cum = np.column_stack([ks, ks[:, None] + (1 - ks)[:, None] * np.cumsum(rest)[None, :]])
    chan_all = (rng.random(T)[:, None] >= cum).sum(axis=1).clip(0, 5).astype(np.int8)
    ctx.rated = rated
    keep = rated & ~ctx.coerced
    idx = np.flatnonzero(keep)
    n = len(idx)
    b = _empty(n)
    b["window"][:] = ctx.t_win[idx]
    b["staff"][:] = ctx.t_staff[idx]
    b["stype"][:] = ctx.t_stype[idx]
    ch = chan_all[idx]
    b["channel"][:] = ch
    served = ctx.t_served[idx]
    b["served"][:] = served
    b["ticket"][:] = ctx.ticket_ids(ctx.t_win[idx], ctx.t_day[idx], ctx.t_seq[idx])
    # Delay from service to rating (seconds): seconds at the kiosk, heavy-tailed at home.
    delay = np.zeros(n)
    m = ch == _CH["kiosk"]
    delay[m] = 2 + rng.lognormal(np.log(8), 0.6, int(m.sum()))
    m = ch == _CH["qr"]
    k = int(m.sum())
    delay[m] = np.where(
        rng.random(k) < 0.75,
        rng.lognormal(np.log(120), 0.8, k),
        rng.lognormal(np.log(3 * 3600), 1.3, k),
    )
    m = ch == _CH["app"]
    k = int(m.sum())
    delay[m] = rng.lognormal(np.log(2 * 3600), 1.6, k) + np.where(
        rng.random(k) < 0.05, rng.pareto(1.5, k) * 86400, 0
    )
    m = ch == _CH["sms"]
    delay[m] = rng.uniform(60, 1800, int(m.sum())) + rng.lognormal(np.log(2400), 1.2, int(m.sum()))
    m = ch == _CH["web"]
    delay[m] = rng.lognormal(np.log(20 * 3600), 1.0, int(m.sum()))
    delay = np.minimum(delay, 20 * 86400)
    submitted = served + delay.astype(np.int64)
    m = ch == _CH["phone"]  # hotline call-back survey, 1-5 days later in call-centre hours
    k = int(m.sum())
    d_call = ctx.t_day[idx][m] + rng.integers(1, 6, k)
    submitted[m] = ctx.day_start[d_call] + rng.integers(9 * 3600, 18 * 3600, k)
    b["submitted"][:] = submitted
    staff_missing_p = np.array([0.0, 0.05, 0.2, 0.4, 0.3, 0.5])[ch]
    b["staff_shown"][:] = rng.random(n) >= staff_missing_p
    # Devices: the kiosk pad, the citizen's phone (app install) or phone number (SMS, hotline).
    cit = ctx.t_cit[idx]
    ah, al = ctx.app_device(cit)
    ph, pl = ctx.phone_device(cit)
    kiosk = ch == _CH["kiosk"]
    tel = (ch == _CH["sms"]) | (ch == _CH["phone"])
    b["devh"][:] = np.where(kiosk, ctx.kiosk_h[b["window"]], np.where(tel, ph, ah))
    b["devl"][:] = np.where(kiosk, ctx.kiosk_l[b["window"]], np.where(tel, pl, al))
    # Addresses.
    hall = ctx.win_hall[b["window"]]
    b["ip4"][kiosk] = ctx.hall_wired[hall[kiosk]]
    sms = ch == _CH["sms"]
    b["ip4"][sms] = _SMS_GATEWAYS[rng.integers(0, 2, int(sms.sum()))]
    b["ip4"][ch == _CH["phone"]] = _PHONE_GATEWAY
    in_hall_p = np.where(ch == _CH["qr"], 0.55, np.where(ch == _CH["app"], 0.3, 0.0))
    in_hall = (delay < 1200) & (rng.random(n) < in_hall_p)
    ctx.set_hall_wifi(b, in_hall, hall, rng)
    away = ~kiosk & ~tel & ~in_hall
    office = ctx.office(cit)
    hour = ctx.local_hour(submitted)
    workday = ctx.day_type[np.clip(ctx.day_of(submitted), 0, len(ctx.day_type) - 1)] == 1
    at_office = away & (office >= 0) & workday & (hour >= 9) & (hour < 18) & (rng.random(n) < 0.7)
    b["ip4"][at_office] = _OFFICE4[office[at_office]]
    away &= ~at_office
    p_mobile = np.where(ch == _CH["qr"], 0.7, np.where(ch == _CH["app"], 0.5, 0.0))
    mobile = away & (rng.random(n) < p_mobile)
    ctx.set_mobile(b, mobile, ctx.carrier(cit), rng)
    ctx.set_home(b, away & ~mobile, cit, rng)
    v4 = b["ipk"] == _IPK_V4
    mapped = v4 & ((ch == _CH["qr"]) | (ch == _CH["web"])) & (rng.random(n) < 0.2)
    b["ipk"][mapped] = _IPK_MAPPED
    # Scores around the window's and the staff member's true quality.
    st = b["staff"]
    latent = ctx.win_q[b["window"]] + ctx.staff_off[st] * 0.7 + _STYPE_EFFECT[b["stype"]]
    b["scores"][:] = _honest_scores(rng, latent, ctx.t_wait[idx], ctx.staff_off[st] * 0.6, kiosk)
    b["comment"][:] = _pick_comments(rng, _composite(b["scores"]))
    b["kind"][:] = _KIND["honest"]
    ctx.claimed |= keep
    return b


def _identical_retries(cfg: WorldConfig, cols: _Batch) -> np.ndarray:
    """Indices of honest rows that a flaky network sends twice (byte-identical)."""
    if cfg.identical_retries <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = _stream(cfg.seed, "identical_retries")
    ch = cols["channel"]
    p = np.where(
        ch == _CH["kiosk"], 0.002, np.where((ch == _CH["qr"]) | (ch == _CH["app"]), 0.008, 0.0)
    )
    p = np.minimum(1.0, p * cfg.identical_retries)
    honest = cols["kind"] == _KIND["honest"]
    return np.flatnonzero(honest & (rng.random(len(ch)) < p))
