"""The world's fixed parts: calendar and opening hours, halls, windows, staff on shifts,
a month of tickets served through queues, the citizens behind them, and their devices and
addresses. Everything the honest and attack generators share."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from functools import cached_property

import numpy as np

from simulation._batch import _Batch
from simulation.addresses import (
    _CGNAT,
    _HOME4,
    _IPK_V4,
    _IPK_V6,
    _NET1,
    _OFFICE4,
    _V6_BASE,
)
from simulation.model import _STYPE_DUR, _STYPES, Attack, WorldConfig
from simulation.streams import _U64, _mix, _stream, _u64

# Arrival profile, 30-minute bins from 09:00 local (relative weights).
_PROFILE_FULL = np.array(
    [0.8, 1.2, 1.4, 1.4, 1.2, 0.8, 0.5, 0.5, 0.7, 1.0, 1.2, 1.2, 1.1, 1.0, 0.8, 0.5]
)
_PROFILE_HALF = _PROFILE_FULL[:6]
_OPEN_S = 9 * 3600
# Relative demand by weekday (Mon..Sun); Saturday is a half day.
_WEEKDAY_DEMAND = (1.2, 1.0, 1.0, 0.95, 1.1, 0.55, 0.4)


class _Ctx:
    """Everything the generators share: halls, windows, staff, days, tickets."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        self.tz: tzinfo = cfg.start.tzinfo  # type: ignore[assignment]
        self.s4 = min(1.0, 30_000 / max(cfg.honest_ratings, 1))  # IPv4 share scale, see _ip_*
        keys = _u64(_stream(cfg.seed, "keys"), 16)
        self.keys = [_U64(k) for k in keys]
        self._days()
        self._layout()
        self.fab_next: dict[tuple[int, int], int] = {}
        self.attacks: list[Attack] = []

    # ---- calendar ---------------------------------------------------------------------

    def _days(self) -> None:
        cfg = self.cfg
        first = cfg.start.astimezone(self.tz).date()
        extra = 45  # late ratings spill past the period
        self.n_days = cfg.days
        starts, types, stamps, demand = [], [], [], []
        closed = set(cfg.closed_dates)
        for d in range(cfg.days + extra):
            day = first + timedelta(days=d)
            starts.append(int(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()))
            wd = day.weekday()
            open_ = d < cfg.days and wd in cfg.open_weekdays and day not in closed
            types.append(0 if not open_ else (2 if wd == 5 else 1))
            stamps.append(day.strftime("%Y%m%d"))
            demand.append(_WEEKDAY_DEMAND[wd] if open_ else 0.0)
        self.day_start = np.array(starts, dtype=np.int64)
        self.day_type = np.array(types, dtype=np.int8)
        self.day_stamp = stamps
        self.day_demand = np.array(demand[: cfg.days])
        self.start_ts = int(cfg.start.timestamp())
        self.end_ts = int(self.day_start[cfg.days])
        self.open_days = np.flatnonzero(self.day_type[: cfg.days] > 0)

    def day_of(self, t: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.day_start, t, side="right") - 1

    def local_hour(self, t: np.ndarray) -> np.ndarray:
        d = np.clip(self.day_of(t), 0, len(self.day_start) - 1)
        return (t - self.day_start[d]) / 3600.0

    # ---- halls, windows, staff --------------------------------------------------------

    def _layout(self) -> None:
        cfg = self.cfg
        rng = _stream(cfg.seed, "layout")
        H, WP = cfg.halls, cfg.windows_per_hall
        self.hall_ids = [f"H{h + 1}" for h in range(H)]
        self.hall_wired = np.array([_NET1 + 1 + 3 * h for h in range(H)], dtype=np.int64)
        self.hall_wifi = np.array(
            [[_NET1 + 2 + 3 * h, _NET1 + 3 + 3 * h] for h in range(H)], dtype=np.int64
        )
        self.hall_v6 = np.array(
            [_V6_BASE | (0x00A0 << 16) | (h + 1) for h in range(H)], dtype=np.uint64
        )
        self.hall_kiosk_share = np.clip(rng.normal(0.42, 0.08, H), 0.2, 0.65)
        self.hall_participation = np.clip(rng.normal(cfg.participation, 0.03, H), 0.05, 1.0)
        W = H * WP
        self.W = W
        self.win_hall = np.repeat(np.arange(H), WP)
        self.window_ids = [f"H{h + 1}-W{i + 1:02d}" for h in range(H) for i in range(WP)]
        self.win_pop = np.clip(rng.lognormal(0.0, 0.25, W), 0.6, 1.6)
        self.win_q = np.clip(rng.normal(4.3, 0.16, W), 3.6, 4.8)
        n_types = len(_STYPES)
        self.win_type1 = np.array([(i + 2 * h) % n_types for h in range(H) for i in range(WP)])
        self.win_type2 = rng.integers(0, n_types, W)
        self.win_type2_p = np.where(rng.random(W) < 0.4, 0.3, 0.0)
        self.kiosk_h, self.kiosk_l = _u64(rng, W), _u64(rng, W)
        # Staff: one or two per window; two share by split shift, alternate days or week split.
        two = rng.random(W) < cfg.two_staff_share
        self.win_pattern = np.where(two, rng.integers(1, 4, W), 0)
        staff_ids: list[str] = []
        win_staff = np.full((W, 2), -1, dtype=np.int64)
        staff_win: list[int] = []
        per_hall = [0] * H
        for w in range(W):
            h = int(self.win_hall[w])
            for j in range(2 if two[w] else 1):
                per_hall[h] += 1
                win_staff[w, j] = len(staff_ids)
                staff_ids.append(f"H{h + 1}-S{per_hall[h]:02d}")
                staff_win.append(w)
        self.staff_ids = staff_ids
        self.win_staff = win_staff
        self.staff_win = np.array(staff_win, dtype=np.int64)
        S = len(staff_ids)
        self.staff_off = rng.normal(0.0, 0.14, S)
        bad = rng.random(S) < 0.1
        if S >= 5 and not bad.any():
            bad[rng.integers(0, S)] = True
        self.staff_off[bad] -= rng.uniform(0.5, 0.9, int(bad.sum()))
        self.staff_bad = bad
        self.staff_speed = rng.lognormal(0.0, 0.15, S) * np.where(bad, 1.2, 1.0)
        self.staff_h, self.staff_l = _u64(rng, S), _u64(rng, S)  # staff's own phones
        self.staff_carrier = rng.integers(0, 3, S)

    def staff_at(self, win: np.ndarray, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """Which staff member serves at ``win`` on ``day`` at local ``hour``."""
        pat = self.win_pattern[win]
        dow = self._weekday[day]
        # 1: split shift at 12:30; 2: alternate days; 3: the second works Friday and Saturday.
        second = np.select(
            [pat == 1, pat == 2, pat == 3], [hour >= 12.5, day % 2 == 1, dow >= 4], default=False
        )
        return self.win_staff[win, second.astype(np.int64)]

    @cached_property
    def _weekday(self) -> np.ndarray:
        first = self.cfg.start.astimezone(self.tz).date()
        return np.array([(first + timedelta(days=d)).weekday() for d in range(len(self.day_start))])

    def ticket_ids(self, win: np.ndarray, day: np.ndarray, seq: np.ndarray) -> np.ndarray:
        out = np.empty(len(win), dtype=object)
        out[:] = [
            f"{self.window_ids[w]}-{self.day_stamp[d]}-{s:04d}"
            for w, d, s in zip(win.tolist(), day.tolist(), seq.tolist(), strict=True)
        ]
        return out

    def fabricated_ids(self, win: int, day: np.ndarray) -> np.ndarray:
        """Ticket ids in the real format that no ticket has (numbers past the day's last)."""
        seqs = []
        for d in day.tolist():
            key = (win, d)
            nxt = self.fab_next.get(key)
            if nxt is None:
                nxt = int(self.group_count[win, d]) + 1 if d < self.n_days else 1
            seqs.append(nxt)
            self.fab_next[key] = nxt + 1
        return self.ticket_ids(np.full(len(day), win), day, np.array(seqs, dtype=np.int64))

    # ---- tickets ----------------------------------------------------------------------

    def serve_tickets(self) -> None:
        """Serve a month of tickets through per-window FIFO queues (vectorised Lindley)."""
        cfg = self.cfg
        rng = _stream(cfg.seed, "tickets")
        W, D = self.W, cfg.days
        part = self.hall_participation[self.win_hall]
        # Halls size windows to their work: demand follows capacity (1 / service time).
        staff_speed = np.where(self.win_staff >= 0, self.staff_speed[self.win_staff], np.nan)
        mean_dur = 30 + (
            _STYPE_DUR[self.win_type1] * (1 - self.win_type2_p)
            + _STYPE_DUR[self.win_type2] * self.win_type2_p
        ) * np.nanmean(staff_speed, axis=1)
        weight = (self.win_pop / mean_dur)[:, None] * self.day_demand[None, :]
        base = cfg.honest_ratings / max(float((weight * part[:, None]).sum()), 1e-9)
        lam = base * weight
        counts = rng.poisson(lam)  # (W, D)
        n = int(counts.sum())
        flat = counts.reshape(-1)
        gid = np.repeat(np.arange(W * D), flat)
        win = gid // D
        day = gid % D
        # Arrival times from the day's 30-minute profile.
        half = self.day_type[day] == 2
        u = rng.random(n)
        bin_ = np.empty(n, dtype=np.int64)
        for prof, mask in ((_PROFILE_FULL, ~half), (_PROFILE_HALF, half)):
            cdf = np.cumsum(prof) / prof.sum()
            bin_[mask] = np.minimum(np.searchsorted(cdf, u[mask], side="right"), len(prof) - 1)
        arrival = (
            self.day_start[day] + _OPEN_S + bin_ * 1800 + (rng.random(n) * 1800).astype(np.int64)
        )
        order = np.lexsort((arrival, gid))
        win, day, gid, arrival = win[order], day[order], gid[order], arrival[order]
        hour = (arrival - self.day_start[day]) / 3600.0
        staff = self.staff_at(win, day, hour)
        stype = np.where(
            rng.random(n) < self.win_type2_p[win], self.win_type2[win], self.win_type1[win]
        )
        mean = _STYPE_DUR[stype] * self.staff_speed[staff]
        dur = (30 + rng.gamma(2.5, mean / 2.5)).astype(np.int64)
        # Lindley: start_i = max(arrival_i, start_{i-1} + dur_{i-1}) within a window-day.
        gstart = np.concatenate(([0], np.cumsum(flat)))[:-1]
        csum = np.cumsum(dur)
        excl = csum - dur - (csum - dur)[gstart[gid]]
        rel = arrival - self.start_ts
        big = np.int64((D + 10) * 86400 * 4)
        key = rel - excl + gid.astype(np.int64) * big
        start = np.maximum.accumulate(key) - gid.astype(np.int64) * big + excl + self.start_ts
        # Numbers stop being called 45 minutes after closing: the rest come back another day.
        close = np.where(half, 12 * 3600, 17 * 3600)[order] + 45 * 60
        keep = start <= self.day_start[day] + close
        win, day, gid, arrival, staff, stype = (
            win[keep],
            day[keep],
            gid[keep],
            arrival[keep],
            staff[keep],
            stype[keep],
        )
        start, dur = start[keep], dur[keep]
        n = int(keep.sum())
        flat = np.bincount(gid, minlength=W * D)
        counts = flat.reshape(W, D)
        self.group_count = counts
        gstart = np.concatenate(([0], np.cumsum(flat)))[:-1]
        served = start + dur
        seq = np.arange(n) - gstart[gid] + 1
        self.t_win, self.t_day, self.t_seq = win, day, seq
        self.t_arrival, self.t_served, self.t_staff, self.t_stype = arrival, served, staff, stype
        self.t_wait = start - arrival
        self.t_gid = gid
        self.g_start = gstart
        self.T = n
        self.rated = np.zeros(n, dtype=bool)
        self.claimed = np.zeros(n, dtype=bool)
        self.coerced = np.zeros(n, dtype=bool)
        self._citizens(rng)

    def _citizens(self, rng: np.random.Generator) -> None:
        """Who each ticket's citizen is: one-off visitors, agents, returning residents."""
        n, W, D = self.T, self.W, self.cfg.days
        cit = np.arange(n, dtype=np.int64)
        nxt = n
        # Agents (tax / licence agents, company clerks): a home window, visits several
        # days a week, one to four consecutive tickets per visit.
        per_win = self.group_count.sum(axis=1)
        n_agents = np.maximum(0, np.rint(per_win * 0.03 / 12)).astype(np.int64)
        ag_win = np.repeat(np.arange(W), n_agents)
        if len(ag_win):
            visit = rng.random((len(ag_win), D)) < rng.uniform(0.25, 0.6, len(ag_win))[:, None]
            a_idx, v_day = np.nonzero(visit)
            g = ag_win[a_idx] * D + v_day
            cnt = self.group_count.reshape(-1)[g]
            ok = cnt > 0
            a_idx, g, cnt = a_idx[ok], g[ok], cnt[ok]
            k = np.minimum(1 + rng.binomial(3, 0.3, len(g)), cnt)
            off = (rng.random(len(g)) * (cnt - k + 1)).astype(np.int64)
            first = self.g_start[g] + off
            rep = np.repeat(np.arange(len(g)), k)
            within = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k)
            cit[first[rep] + within] = nxt + a_idx[rep]
            self.agent_tickets = first[rep] + within
        else:
            self.agent_tickets = np.zeros(0, dtype=np.int64)
        nxt += len(ag_win)
        # Returning residents: ~10 % of the rest come back to the same window another day.
        ret = (rng.random(n) < 0.10) & (cit >= 0) & (cit < n)
        ret[self.agent_tickets] = False
        pool = np.maximum(3, np.rint(np.bincount(self.t_win[ret], minlength=W) / 2.2)).astype(
            np.int64
        )
        pool_off = nxt + np.concatenate(([0], np.cumsum(pool)))[:-1]
        r = (rng.random(int(ret.sum())) * pool[self.t_win[ret]]).astype(np.int64)
        cit[ret] = pool_off[self.t_win[ret]] + r
        nxt += int(pool.sum())
        # Multi-ticket visits: the next ticket at the same window is the same person.
        same = np.zeros(n, dtype=bool)
        same[1:] = (self.t_gid[1:] == self.t_gid[:-1]) & (rng.random(max(n - 1, 0)) < 0.03)
        idx = np.flatnonzero(same)
        cit[idx] = cit[idx - 1]
        self.t_cit = cit

    # ---- citizens' devices and addresses ----------------------------------------------

    def app_device(self, cit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = cit.astype(_U64)
        return _mix(c ^ self.keys[0]), _mix(c ^ self.keys[1])

    def phone_device(self, cit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = cit.astype(_U64)
        return _mix(c ^ self.keys[2]), _mix(c ^ self.keys[3])

    def set_hall_wifi(
        self, b: _Batch, m: np.ndarray, hall: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Hall public Wi-Fi: one of two NAT addresses, or the hall's IPv6 /64 (35 %)."""
        idx = np.flatnonzero(m)
        v6 = rng.random(len(idx)) < 0.35
        b["ipk"][idx] = np.where(v6, _IPK_V6, _IPK_V4)
        b["ip4"][idx] = self.hall_wifi[hall[idx], (b["devh"][idx] % _U64(2)).astype(np.int64)]
        b["ip6h"][idx] = np.where(v6, self.hall_v6[hall[idx]], _U64(0))
        b["ip6l"][idx] = np.where(v6, _u64(rng, len(idx)), _U64(0))

    def set_mobile(
        self, b: _Batch, m: np.ndarray, carrier: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Mobile data: a carrier-grade NAT address (IPv4) or a fresh /64 per attach (IPv6)."""
        idx = np.flatnonzero(m)
        v4 = rng.random(len(idx)) < 0.45 * self.s4
        car = carrier[idx]
        b["ipk"][idx] = np.where(v4, _IPK_V4, _IPK_V6)
        b["ip4"][idx] = np.where(v4, _CGNAT[car, rng.integers(0, 8, len(idx))], 0)
        third = (0xC100 + car * 0x100 + rng.integers(0, 256, len(idx))).astype(_U64)
        hi = _U64(_V6_BASE) | (third << _U64(16)) | rng.integers(0, 65536, len(idx)).astype(_U64)
        b["ip6h"][idx] = np.where(v4, _U64(0), hi)
        b["ip6l"][idx] = np.where(v4, _U64(0), _u64(rng, len(idx)))

    def set_home(self, b: _Batch, m: np.ndarray, cit: np.ndarray, rng: np.random.Generator) -> None:
        """Home broadband: a household /64 that changes weekly (privacy addresses), or a
        dynamic IPv4 that changes every two days."""
        idx = np.flatnonzero(m)
        c = cit[idx].astype(_U64)
        t = b["submitted"][idx]
        v6_capable = (_mix(c ^ self.keys[4]) % _U64(1000)).astype(
            np.float64
        ) / 1000 >= 0.45 * self.s4
        v6 = v6_capable & (rng.random(len(idx)) < 0.85)
        week = ((t - self.start_ts) // (7 * 86400)).astype(_U64)
        hh = _mix(c ^ self.keys[5] ^ (week * _U64(0x1000193)))
        isp = _mix(c ^ self.keys[6]) % _U64(2)
        third = _U64(0xF100) + isp * _U64(0x100) + (hh & _U64(255))
        hi = _U64(_V6_BASE) | (third << _U64(16)) | ((hh >> _U64(8)) & _U64(0xFFFF))
        period = ((t - self.start_ts) // (2 * 86400)).astype(_U64)
        slot = (_mix(c ^ self.keys[7] ^ (period * _U64(0x9E37))) % _U64(len(_HOME4))).astype(
            np.int64
        )
        b["ipk"][idx] = np.where(v6, _IPK_V6, _IPK_V4)
        b["ip4"][idx] = np.where(v6, 0, _HOME4[slot])
        b["ip6h"][idx] = np.where(v6, hi, _U64(0))
        b["ip6l"][idx] = np.where(v6, _u64(rng, len(idx)), _U64(0))

    def carrier(self, cit: np.ndarray) -> np.ndarray:
        return (_mix(cit.astype(_U64) ^ self.keys[8]) % _U64(3)).astype(np.int64)

    def office(self, cit: np.ndarray) -> np.ndarray:
        """Office index (0..63) for clerks who rate from work, -1 for everyone else."""
        h = _mix(cit.astype(_U64) ^ self.keys[9])
        is_office = (h % _U64(100)) < _U64(6)
        return np.where(is_office, ((h >> _U64(8)) % _U64(len(_OFFICE4))).astype(np.int64), -1)
