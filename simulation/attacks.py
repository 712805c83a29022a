"""The attack campaigns, each from its own random stream: coerced, self-rating, slow
brushing, device farm, flood, bombing and replay; how their targets are planned so that
switching one attack off moves nothing else."""

from __future__ import annotations

from collections import Counter

import numpy as np

from simulation._batch import _Batch, _empty, _take
from simulation.addresses import _HOME4, _IDC4, _IPK_V4, _IPK_V6, _V6_BASE
from simulation.context import _OPEN_S, _Ctx
from simulation.model import _CH, _KIND, DIMENSIONS, Attack, _composite
from simulation.streams import _U64, _campaigns, _mix, _stream, _u64

_BOMB_TEMPLATES = (
    "{s}号工作人员态度恶劣，故意刁难，强烈要求处理",
    "投诉{s}号，服务态度极差，拖延办理",
    "{s}号窗口人员推诿扯皮，差评",
)
_BOOST_COMMENTS = ("很好", "非常满意", "服务很好", "好评", "满意")


def _pushed_scores(rng: np.random.Generator, n: int, value: int, p_off: float) -> np.ndarray:
    """All ``value`` except that a share ``p_off`` of rows moves one dimension by one."""
    s = np.full((n, len(DIMENSIONS)), value, dtype=np.int8)
    off = np.flatnonzero(rng.random(n) < p_off)
    step = 1 if value < 3 else -1
    s[off, rng.integers(0, len(DIMENSIONS), len(off))] += step
    return s


def _new_attack(ctx: _Ctx, kind: str, win: int | None, staff: int | None, text: str) -> int:
    n = sum(1 for a in ctx.attacks if a.kind == kind) + 1
    ctx.attacks.append(
        Attack(
            attack_id=f"{kind}-{n}",
            kind=kind,
            target_window=None if win is None else ctx.window_ids[win],
            target_staff=None if staff is None else ctx.staff_ids[staff],
            description=text,
            ratings=0,
        )
    )
    return len(ctx.attacks) - 1


def _finish(ctx: _Ctx, b: _Batch, kind: str, attack: int) -> _Batch:
    b["kind"][:] = _KIND[kind]
    b["attack"][:] = attack
    a = ctx.attacks[attack]
    ctx.attacks[attack] = Attack(
        a.attack_id, a.kind, a.target_window, a.target_staff, a.description, len(b["kind"])
    )
    return b


def _from_tickets(ctx: _Ctx, t: np.ndarray) -> _Batch:
    """A batch about real tickets ``t`` (ticket fields filled, staff shown)."""
    b = _empty(len(t))
    b["ticket"][:] = ctx.ticket_ids(ctx.t_win[t], ctx.t_day[t], ctx.t_seq[t])
    b["window"][:] = ctx.t_win[t]
    b["staff"][:] = ctx.t_staff[t]
    b["staff_shown"][:] = True
    b["stype"][:] = ctx.t_stype[t]
    b["served"][:] = ctx.t_served[t]
    return b


def _available(ctx: _Ctx, mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask & ~ctx.claimed & ~ctx.rated)


def _plan_targets(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    """A fixed order of target windows for the attacks, and the coerced candidates.

    Independent of the attack switches, so turning one attack off moves nothing else.
    Coerced candidates are a reserved slice, the lower-quality half of it first.
    """
    rng = _stream(ctx.cfg.seed, "targets")
    perm = rng.permutation(ctx.W)
    reserve = max(2, ctx.W // 4) if ctx.W > 3 else 1
    cands = perm[ctx.W - reserve :]
    cands = cands[np.argsort(ctx.win_q[cands], kind="stable")]
    return perm[: ctx.W - reserve] if reserve < ctx.W else perm, cands


def _target(others: np.ndarray, slot: int, campaign: int) -> int:
    return int(others[(slot + 6 * campaign) % len(others)])


def _coerced(ctx: _Ctx, cands: np.ndarray) -> tuple[list[_Batch], set[str]]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.coerced, 2, cfg.halls)
    rng = _stream(cfg.seed, "coerced")
    out, wins = [], set()
    for c in range(min(n, len(cands))):
        w = int(cands[c % len(cands)])
        start_day = int(rng.integers(0, max(1, cfg.days // 3)))
        p = min(0.95, 0.75 * (size if c == n - 1 else 1.0))
        a = _new_attack(
            ctx, "coerced", w, None,
            f"staff at {ctx.window_ids[w]} press citizens for all-5 ratings on the spot "
            f"from day {start_day + 1} (share {p:.0%} of tickets)",
        )  # fmt: skip
        t = np.flatnonzero((ctx.t_win == w) & (ctx.t_day >= start_day) & ~ctx.claimed)
        t = t[rng.random(len(t)) < p]
        ctx.coerced[t] = True
        ctx.claimed[t] = True
        b = _from_tickets(ctx, t)
        k = len(t)
        kiosk = rng.random(k) < 0.7
        b["channel"][:] = np.where(kiosk, _CH["kiosk"], _CH["qr"])
        b["submitted"][:] = b["served"] + np.where(
            kiosk, rng.integers(3, 25, k), rng.integers(20, 120, k)
        )
        ah, al = ctx.app_device(ctx.t_cit[t])
        b["devh"][:] = np.where(kiosk, ctx.kiosk_h[w], ah)
        b["devl"][:] = np.where(kiosk, ctx.kiosk_l[w], al)
        hall = np.full(k, ctx.win_hall[w])
        b["ip4"][kiosk] = ctx.hall_wired[ctx.win_hall[w]]
        phone = ~kiosk
        wifi = phone & (rng.random(k) < 0.6)
        ctx.set_hall_wifi(b, wifi, hall, rng)
        ctx.set_mobile(b, phone & ~wifi, ctx.carrier(ctx.t_cit[t]), rng)
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.07)
        out.append(_finish(ctx, b, "coerced", a))
        wins.add(ctx.window_ids[w])
    return out, wins


def _self_rating(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.self_rating, 2, cfg.halls)
    rng = _stream(cfg.seed, "self_rating")
    out = []
    for c in range(n):
        w = _target(others, 0, c)
        staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
        s = int(staff_here[rng.integers(0, len(staff_here))])
        scale = size if c == n - 1 else 1.0
        rate = 2.5 * scale
        start_day = int(rng.integers(0, max(1, cfg.days // 4)))
        a = _new_attack(
            ctx, "self_rating", w, s,
            f"{ctx.staff_ids[s]} rates about {1 + rate:.1f} of their own unrated tickets a shift "
            f"from their phone, minutes after service, from day {start_day + 1}",
        )  # fmt: skip
        pool = _available(ctx, (ctx.t_staff == s) & (ctx.t_day >= start_day))
        picked: list[np.ndarray] = []
        for d in np.unique(ctx.t_day[pool]).tolist():
            if rng.random() < 0.15:  # a day off the habit
                continue
            day_pool = pool[ctx.t_day[pool] == d]
            k = min(len(day_pool), 1 + int(rng.poisson(rate)))
            picked.append(np.sort(rng.choice(day_pool, k, replace=False)))
        t = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        ctx.claimed[t] = True
        b = _from_tickets(ctx, t)
        k = len(t)
        b["channel"][:] = np.where(rng.random(k) < 0.75, _CH["qr"], _CH["app"])
        b["submitted"][:] = b["served"] + rng.integers(60, 600, k)
        second = rng.random() < 0.3  # a spare phone on some days
        use2 = second & (rng.random(k) < 0.3)
        b["devh"][:] = np.where(use2, _mix(ctx.staff_h[s] ^ ctx.keys[10]), ctx.staff_h[s])
        b["devl"][:] = np.where(use2, _mix(ctx.staff_l[s] ^ ctx.keys[10]), ctx.staff_l[s])
        wifi = rng.random(k) < 0.8
        ctx.set_hall_wifi(b, wifi, np.full(k, ctx.win_hall[w]), rng)
        ctx.set_mobile(b, ~wifi, np.full(k, ctx.staff_carrier[s]), rng)
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.1)
        out.append(_finish(ctx, b, "self_rating", a))
    return out


def _brushing_slow(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.brushing_slow, 2, cfg.halls)
    rng = _stream(cfg.seed, "brushing_slow")
    out = []
    for c in range(n):
        w = _target(others, 1, c)
        n_dev = max(1, round(rng.integers(3, 7) * (size if c == n - 1 else 1.0)))
        span = min(cfg.days, int(rng.integers(14, 29)))
        start_day = int(rng.integers(0, max(1, cfg.days - span + 1)))
        a = _new_attack(
            ctx, "brushing_slow", w, None,
            f"{n_dev} devices rate real tickets of {ctx.window_ids[w]} once or twice a day each "
            f"over {span} days, in the evening, 5s with a few 4s",
        )  # fmt: skip
        dev_h, dev_l = _u64(rng, n_dev), _u64(rng, n_dev)
        dev_cit = rng.integers(10**12, 2 * 10**12, n_dev)  # their own household / carrier
        dev_mobile = rng.random(n_dev) < 0.4
        rows_t, rows_dev, rows_sub = [], [], []
        per_day: Counter[tuple[int, int]] = Counter()  # (device, submit day): at most two
        for d in range(start_day, start_day + span):
            if ctx.day_type[d] == 0:
                continue
            pool = _available(ctx, (ctx.t_win == w) & (ctx.t_day == d))
            for j in range(n_dev):
                if len(pool) == 0 or rng.random() > 0.72:
                    continue
                k = min(len(pool), 1 + int(rng.random() < 0.25))
                pick = rng.choice(pool, k, replace=False)
                pool = np.setdiff1d(pool, pick)
                for tk in pick.tolist():
                    late = rng.random() < 0.2  # next morning on the way to work
                    sub_day = d + 1 if late else d
                    if per_day[(j, sub_day)] >= 2:
                        continue
                    per_day[(j, sub_day)] += 1
                    sub = ctx.day_start[sub_day] + int(
                        rng.uniform(7 * 3600, 8.5 * 3600)
                        if late
                        else rng.uniform(19 * 3600, 23.5 * 3600)
                    )
                    rows_t.append(tk)
                    rows_dev.append(j)
                    rows_sub.append(max(sub, int(ctx.t_served[tk]) + 600))
        t = np.array(rows_t, dtype=np.int64)
        dev = np.array(rows_dev, dtype=np.int64)
        ctx.claimed[t] = True
        b = _from_tickets(ctx, t)
        k = len(t)
        b["channel"][:] = np.where(rng.random(k) < 0.7, _CH["app"], _CH["qr"])
        b["submitted"][:] = np.array(rows_sub, dtype=np.int64)
        b["devh"][:], b["devl"][:] = dev_h[dev], dev_l[dev]
        mob = dev_mobile[dev]
        ctx.set_mobile(b, mob, dev_cit[dev] % 3, rng)
        ctx.set_home(b, ~mob, dev_cit[dev], rng)
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.25)
        com = rng.random(k) < 0.1
        b["comment"][com] = [
            _BOOST_COMMENTS[i]
            for i in rng.integers(0, len(_BOOST_COMMENTS), int(com.sum())).tolist()
        ]
        out.append(_finish(ctx, b, "brushing_slow", a))
    return out


def _device_farm(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.device_farm, 1, cfg.halls)
    rng = _stream(cfg.seed, "device_farm")
    out = []
    for c in range(n):
        w = _target(others, 2, c)
        n_dev = max(5, round(rng.integers(30, 81) * (size if c == n - 1 else 1.0)))
        n_days = min(len(ctx.open_days), int(rng.integers(3, 9)))
        first = int(rng.integers(0, max(1, len(ctx.open_days) - n_days + 1)))
        days = ctx.open_days[first : first + n_days]
        if len(days) == 0:
            continue
        variant = ("v4_hosting", "v4_home", "v6_prefix")[int(rng.integers(0, 3))]
        insider = rng.random() < 0.5
        a = _new_attack(
            ctx, "device_farm", w, None,
            f"{n_dev} devices ({variant.replace('_', ' ')}) brush {ctx.window_ids[w]} with 5s in "
            f"sessions over {n_days} days ({'real' if insider else 'invented'} ticket ids)",
        )  # fmt: skip
        dev_h, dev_l = _u64(rng, n_dev), _u64(rng, n_dev)
        if variant == "v4_hosting":
            k_addr = int(rng.integers(2, 5))
            base = int(rng.integers(0, len(_IDC4) - k_addr))
            addrs = _IDC4[base : base + k_addr]
        elif variant == "v4_home":
            k_addr = int(rng.integers(3, 6))
            addrs = rng.choice(_HOME4[127:], k_addr, replace=False)
        else:
            addrs = np.zeros(1, dtype=np.int64)
        prefix6 = (
            _U64(_V6_BASE)
            | (_U64(0xDC00 + int(rng.integers(0, 256))) << _U64(16))
            | _U64(int(rng.integers(0, 65536)))
        )
        subs, devs = [], []
        for d in days.tolist():
            for _ in range(int(rng.integers(1, 4))):
                t0 = ctx.day_start[d] + int(rng.uniform(9.5 * 3600, 20 * 3600))
                length = rng.uniform(300, 1200)
                part = np.flatnonzero(rng.random(n_dev) < rng.uniform(0.4, 0.9))
                subs.append(t0 + np.sort(rng.random(len(part)) * length).astype(np.int64))
                devs.append(rng.permutation(part))
        sub = np.concatenate(subs)
        dev = np.concatenate(devs)
        k = len(sub)
        day = ctx.day_of(sub)
        b = _empty(k)
        b["window"][:] = w
        b["submitted"][:] = sub
        real = np.zeros(k, dtype=bool)
        if insider:
            pool = _available(ctx, ctx.t_win == w)
            pool_day = ctx.t_day[pool]
            chosen = np.full(k, -1, dtype=np.int64)
            for i in range(k):
                cand = pool[(pool_day == day[i]) & (ctx.t_served[pool] < sub[i] - 60)]
                cand = cand[~ctx.claimed[cand]]
                if len(cand):
                    chosen[i] = cand[int(rng.integers(0, len(cand)))]
                    ctx.claimed[chosen[i]] = True
            real = chosen >= 0
            t = chosen[real]
            rb = _from_tickets(ctx, t)
            for key in ("ticket", "staff", "staff_shown", "stype", "served"):
                b[key][real] = rb[key]
        fake = np.flatnonzero(~real)
        b["ticket"][fake] = ctx.fabricated_ids(w, day[fake])
        served = np.maximum(
            ctx.day_start[day[fake]] + _OPEN_S, sub[fake] - rng.integers(600, 6 * 3600, len(fake))
        )
        b["served"][fake] = np.minimum(served, sub[fake] - 60)
        b["stype"][fake] = ctx.win_type1[w]
        hour = (b["served"][fake] - ctx.day_start[day[fake]]) / 3600.0
        b["staff"][fake] = ctx.staff_at(np.full(len(fake), w), day[fake], hour)
        b["staff_shown"][fake] = rng.random(len(fake)) < 0.5
        b["channel"][:] = np.where(rng.random(k) < 0.7, _CH["app"], _CH["qr"])
        b["devh"][:], b["devl"][:] = dev_h[dev], dev_l[dev]
        if variant == "v6_prefix":
            b["ipk"][:] = _IPK_V6
            b["ip6h"][:] = prefix6
            b["ip6l"][:] = _mix(dev_l[dev] ^ ctx.keys[11])  # one stable address per device
        else:
            b["ip4"][:] = addrs[dev % len(addrs)]
        b["scores"][:] = _pushed_scores(rng, k, 5, 0.15)
        out.append(_finish(ctx, b, "device_farm", a))
    return out


def _flood(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.flood, 2, cfg.halls)
    rng = _stream(cfg.seed, "flood")
    out = []
    for c in range(n):
        w = _target(others, 3, c)
        k = max(20, round(rng.integers(150, 401) * (size if c == n - 1 else 1.0)))
        d = int(rng.integers(0, cfg.days))
        night = rng.random() < 0.3
        t0 = ctx.day_start[d] + int(
            rng.uniform(0, 6 * 3600) if night else rng.uniform(9 * 3600, 21 * 3600)
        )
        gap = rng.uniform(1.5, 8.0)
        sub = t0 + np.cumsum(gap * rng.lognormal(0, 0.3, k)).astype(np.int64)
        boost = rng.random() < 0.7
        devices = ("single", "rotating", "small_pool")[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
        addr_kind = ("home_v4", "hosting_v4", "home_v6")[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
        uuid_ids = rng.random() < 0.4
        staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
        s = int(staff_here[rng.integers(0, len(staff_here))]) if rng.random() < 0.5 else None
        a = _new_attack(
            ctx, "flood", w, s,
            f"{k} ratings of {'5' if boost else '1'}s on {ctx.window_ids[w]} from one {addr_kind.replace('_', ' ')} "
            f"address in {int((sub[-1] - sub[0]) / 60) + 1} min ({devices} device ids)",
        )  # fmt: skip
        b = _empty(k)
        b["window"][:] = w
        b["submitted"][:] = sub
        b["channel"][:] = int(rng.choice([_CH["app"], _CH["web"], _CH["qr"]]))
        b["stype"][:] = ctx.win_type1[w]
        if s is not None:
            b["staff"][:] = s
            b["staff_shown"][:] = True
        served_day = np.clip(d - rng.integers(0, 3, k), 0, cfg.days - 1)
        b["served"][:] = np.minimum(
            ctx.day_start[served_day] + rng.integers(_OPEN_S, 17 * 3600, k), sub - 300
        )
        b["served_ok"][:] = rng.random() < 0.6
        if uuid_ids:
            hx, lx = _u64(rng, k), _u64(rng, k)
            b["ticket"][:] = [
                f"{h:016x}{x:016x}" for h, x in zip(hx.tolist(), lx.tolist(), strict=True)
            ]
        else:
            b["ticket"][:] = ctx.fabricated_ids(w, served_day)
        if devices == "single":
            dh, dl = _u64(rng, 1), _u64(rng, 1)
            b["devh"][:], b["devl"][:] = dh[0], dl[0]
        elif devices == "rotating":
            b["devh"][:], b["devl"][:] = _u64(rng, k), _u64(rng, k)
        else:
            pool_h, pool_l = _u64(rng, 8), _u64(rng, 8)
            j = rng.integers(0, 8, k)
            b["devh"][:], b["devl"][:] = pool_h[j], pool_l[j]
        if addr_kind == "home_v6":
            hi = (
                _U64(_V6_BASE)
                | (_U64(0xF100 + int(rng.integers(0, 512))) << _U64(16))
                | _U64(int(rng.integers(0, 65536)))
            )
            b["ipk"][:] = _IPK_V6
            b["ip6h"][:] = hi
            b["ip6l"][:] = _u64(rng, 1)[0]
        else:
            pool = _HOME4 if addr_kind == "home_v4" else _IDC4
            b["ip4"][:] = pool[int(rng.integers(0, len(pool)))]
        b["scores"][:] = _pushed_scores(rng, k, 5 if boost else 1, 0.15)
        out.append(_finish(ctx, b, "flood", a))
    return out


def _bombing(ctx: _Ctx, others: np.ndarray) -> list[_Batch]:
    cfg = ctx.cfg
    n, size = _campaigns(cfg.bombing, 1, cfg.halls)
    rng = _stream(cfg.seed, "bombing")
    out = []
    for c in range(n):
        w = _target(others, 4, c)
        staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
        s = int(staff_here[rng.integers(0, len(staff_here))])
        n_dev = max(2, round(rng.integers(3, 7) * (size if c == n - 1 else 1.0)))
        span = min(cfg.days, int(rng.integers(5, 13)))
        start_day = int(rng.integers(0, max(1, cfg.days - span + 1)))
        a = _new_attack(
            ctx, "bombing", w, s,
            f"a household's {n_dev} devices give {ctx.staff_ids[s]} 1s over {span} days, "
            "often with near-duplicate comments",
        )  # fmt: skip
        cit = int(rng.integers(10**12, 2 * 10**12))
        dev_h, dev_l = _u64(rng, n_dev), _u64(rng, n_dev)
        dev_mobile = rng.random(n_dev) < 0.35
        subs, devs = [], []
        for d in range(start_day, start_day + span):
            for j in range(n_dev):
                if rng.random() < 0.55:
                    m = int(rng.integers(1, 4))
                    subs.append(
                        ctx.day_start[d]
                        + np.sort(rng.uniform(8 * 3600, 23.8 * 3600, m)).astype(np.int64)
                    )
                    devs.append(np.full(m, j))
        if not subs:
            subs, devs = (
                [np.array([ctx.day_start[start_day] + 20 * 3600])],
                [np.zeros(1, dtype=np.int64)],
            )
        sub = np.concatenate(subs)
        dev = np.concatenate(devs)
        k = len(sub)
        b = _empty(k)
        b["window"][:] = w
        b["staff"][:] = s
        b["staff_shown"][:] = True
        b["stype"][:] = ctx.win_type1[w]
        b["submitted"][:] = sub
        day = np.clip(ctx.day_of(sub) - rng.integers(0, 2, k), 0, cfg.days - 1)
        b["ticket"][:] = ctx.fabricated_ids(w, day)
        b["served"][:] = np.minimum(
            ctx.day_start[day] + rng.integers(_OPEN_S, 17 * 3600, k), sub - 600
        )
        b["served_ok"][:] = rng.random(k) < 0.6
        b["channel"][:] = np.where(rng.random(k) < 0.6, _CH["app"], _CH["web"])
        b["devh"][:], b["devl"][:] = dev_h[dev], dev_l[dev]
        mob = dev_mobile[dev]
        ctx.set_mobile(b, mob, np.full(k, cit % 3), rng)
        ctx.set_home(b, ~mob, np.full(k, cit), rng)  # one household: one /64 or home IPv4 a week
        b["scores"][:] = np.where(
            rng.random((k, 1)) < 0.75, 1, rng.integers(1, 3, (k, len(DIMENSIONS)))
        ).astype(np.int8)
        tpl = _BOMB_TEMPLATES[int(rng.integers(0, len(_BOMB_TEMPLATES)))]
        number = ctx.staff_ids[s].split("-S")[-1]
        has = rng.random(k) < 0.6
        b["comment"][has] = [
            _near_duplicate(rng, tpl.format(s=number)) for _ in range(int(has.sum()))
        ]
        out.append(_finish(ctx, b, "bombing", a))
    return out


def _near_duplicate(rng: np.random.Generator, text: str) -> str:
    """``text`` with small edits: punctuation, emphasis, a filler word."""
    endings = ("", "！", "！！", "。", "!!!", "，太过分了", "，希望领导重视")
    t = text
    if rng.random() < 0.3:
        t = t.replace("强烈", "坚决") if "强烈" in t else "再次" + t
    return t + endings[int(rng.integers(0, len(endings)))]


def _replay(ctx: _Ctx, honest: _Batch, others: np.ndarray) -> list[_Batch]:
    """Existing rated tickets re-submitted with other content."""
    cfg = ctx.cfg
    n, size = _campaigns(cfg.replay, 2, cfg.halls)
    rng = _stream(cfg.seed, "replay")
    comp = _composite(honest["scores"])
    used = np.zeros(len(comp), dtype=bool)
    out = []
    for c in range(n):
        w = _target(others, 5, c)
        scale = size if c == n - 1 else 1.0
        hall = int(ctx.win_hall[w])
        if c % 2 == 0:
            # An insider launders one staff member's low scores: same tickets, all 5s.
            staff_here = ctx.win_staff[w][ctx.win_staff[w] >= 0]
            s = int(staff_here[rng.integers(0, len(staff_here))])
            cand = np.flatnonzero((honest["staff"] == s) & ~used)
            order = cand[np.argsort(comp[cand] + rng.random(len(cand)) * 0.5, kind="stable")]
            k = min(len(order), max(5, round(rng.integers(25, 51) * scale)))
            src = np.sort(order[:k])
            a = _new_attack(
                ctx, "replay", w, s,
                f"an insider re-submits {k} of {ctx.staff_ids[s]}'s lowest-rated tickets with 5s "
                "from the hall network",
            )  # fmt: skip
        else:
            # A bot replays requests captured from one window's QR page, scores tweaked.
            s = None
            cand = np.flatnonzero(
                (honest["window"] == w) & (honest["channel"] != _CH["kiosk"]) & ~used
            )
            k = min(len(cand), max(5, round(rng.integers(25, 61) * scale)))
            src = np.sort(rng.choice(cand, k, replace=False))
            a = _new_attack(
                ctx, "replay", w, None,
                f"a bot replays {k} ratings captured from {ctx.window_ids[w]}'s QR page with "
                "scores changed by one point and the original device id",
            )  # fmt: skip
        used[src] = True
        b = _take(honest, src)
        k = len(src)
        b["comment"][:] = None
        b["submitted"][:] = b["submitted"] + rng.integers(3600, 2 * 86400, k)
        if s is not None:
            b["scores"][:] = _pushed_scores(rng, k, 5, 0.05)
            devs_h, devs_l = _u64(rng, 2), _u64(rng, 2)
            j = rng.integers(0, 2, k)
            b["devh"][:], b["devl"][:] = devs_h[j], devs_l[j]
            b["channel"][:] = _CH["qr"]
            b["staff_shown"][:] = True
            b["ipk"][:] = _IPK_V4
            b["ip6h"][:] = 0
            b["ip6l"][:] = 0
            b["ip4"][:] = ctx.hall_wifi[hall, int(rng.integers(0, 2))]
        else:
            delta = np.where(b["scores"] <= 3, 1, -1).astype(np.int8)
            change = rng.random(b["scores"].shape) < 0.5
            change[np.arange(k), rng.integers(0, len(DIMENSIONS), k)] = True
            b["scores"][:] = np.clip(b["scores"] + delta * change, 1, 5)
            b["ipk"][:] = _IPK_V4
            b["ip6h"][:] = 0
            b["ip6l"][:] = 0
            b["ip4"][:] = _IDC4[int(rng.integers(0, len(_IDC4)))]
        out.append(_finish(ctx, b, "replay_duplicate", a))
    return out
