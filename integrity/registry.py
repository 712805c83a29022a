"""The service registry: halls, their windows, and the staff roster.

Halls have a supervisor; windows belong to a hall, serve some service types and have
a head who answers their low-score alerts; the roster says who works at which window
from which date to which date (dates in the rule set's time zone, both ends included).
Supervisors and heads are people in the people registry.

Loaded whole (``integrity registry load``), replacing the previous one, as one ledger
event (``registry.loaded``); its tables are configuration tables, sealed in the same
unit of work (``config.sealed``, see :mod:`integrity.config_tables`), so ``ledger
verify`` tells if their rows were edited afterwards. With no registry loaded
the engine behaves as if every window existed (intake does not check windows).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from integrity.clock import Clock
from integrity.errors import FieldError, InvalidInput

if TYPE_CHECKING:
    from integrity.people import People
    from integrity.ports import RegistryStore


@dataclass(frozen=True)
class Hall:
    hall_id: str
    name: str = ""
    supervisor: str | None = None  # person id


@dataclass(frozen=True)
class Window:
    window_id: str
    hall_id: str
    name: str = ""
    head: str | None = None  # person id
    service_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class RosterEntry:
    staff_id: str
    window_id: str
    start: date
    end: date | None = None  # open-ended when None


@dataclass(frozen=True)
class ServiceRegistry:
    """The loaded registry with lookups. Empty when none was loaded (``loaded`` false)."""

    halls: Mapping[str, Hall] = field(default_factory=dict)
    windows: Mapping[str, Window] = field(default_factory=dict)
    roster: tuple[RosterEntry, ...] = ()
    version: int | None = None  # the ``registry.loaded`` event it came from

    @property
    def loaded(self) -> bool:
        return self.version is not None

    def window(self, window_id: str) -> Window | None:
        return self.windows.get(window_id)

    def hall_of(self, window_id: str) -> Hall | None:
        w = self.windows.get(window_id)
        return self.halls.get(w.hall_id) if w else None

    def windows_of(self, hall_id: str) -> list[str]:
        return sorted(w.window_id for w in self.windows.values() if w.hall_id == hall_id)

    def on_roster(self, staff_id: str, window_id: str, day: date) -> bool:
        """Whether ``staff_id`` works at ``window_id`` on ``day``."""
        return any(
            e.staff_id == staff_id
            and e.window_id == window_id
            and e.start <= day
            and (e.end is None or day <= e.end)
            for e in self._by_staff().get(staff_id, ())
        )

    def _by_staff(self) -> dict[str, list[RosterEntry]]:
        cache = self.__dict__.get("_staff_index")
        if cache is None:
            cache = {}
            for e in self.roster:
                cache.setdefault(e.staff_id, []).append(e)
            object.__setattr__(self, "_staff_index", cache)
        return cache

    def people(self) -> set[str]:
        """Everyone the registry names as a supervisor or head."""
        out = {h.supervisor for h in self.halls.values() if h.supervisor}
        out |= {w.head for w in self.windows.values() if w.head}
        return out

    def canonical(self) -> dict[str, Any]:
        """The registry as plain data in a fixed order (for comparisons)."""
        return {
            "halls": [
                {"hall_id": h.hall_id, "name": h.name, "supervisor": h.supervisor}
                for h in sorted(self.halls.values(), key=lambda h: h.hall_id)
            ],
            "windows": [
                {
                    "window_id": w.window_id,
                    "hall_id": w.hall_id,
                    "name": w.name,
                    "head": w.head,
                    "service_types": list(w.service_types),
                }
                for w in sorted(self.windows.values(), key=lambda w: w.window_id)
            ],
            "roster": [
                {
                    "staff_id": e.staff_id,
                    "window_id": e.window_id,
                    "from": e.start.isoformat(),
                    "to": e.end.isoformat() if e.end else None,
                }
                for e in sorted(
                    self.roster, key=lambda e: (e.staff_id, e.window_id, e.start, e.end or date.max)
                )
            ],
        }


# -- parsing -----------------------------------------------------------------------------


def _text(doc: Mapping[str, Any], key: str, where: str, errors: list[FieldError], *,
          required: bool = True, limit: int = 64) -> str | None:  # fmt: skip
    value = doc.get(key)
    if value is None or value == "":
        if required:
            errors.append(FieldError(f"{where}.{key}", "required"))
        return None
    if not isinstance(value, str) or len(value) > limit or value != value.strip():
        errors.append(FieldError(f"{where}.{key}", f"a string of 1-{limit} characters"))
        return None
    return value


def _day(value: Any, where: str, errors: list[FieldError]) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        errors.append(FieldError(where, f"expected a date YYYY-MM-DD, got {value!r}"))
        return None


def _list(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.replace(",", ";").split(";") if v.strip())
    return tuple(str(v).strip() for v in value if str(v).strip())


def parse_registry(doc: Any) -> ServiceRegistry:
    """Validate a registry document (``{"halls": [...], "windows": [...], "roster": [...]}``);
    ``InvalidInput`` lists every problem, by list and position."""
    errors: list[FieldError] = []
    if not isinstance(doc, Mapping):
        raise InvalidInput([FieldError("(file)", "expected a JSON object")], what="registry")
    unknown = sorted(set(doc) - {"halls", "windows", "roster"})
    if unknown:
        errors.append(FieldError("(file)", f"unknown list(s) {', '.join(unknown)}"))
    halls: dict[str, Hall] = {}
    for i, h in enumerate(_items(doc, "halls", errors)):
        where = f"halls[{i}]"
        hid = _text(h, "hall_id", where, errors)
        name = _text(h, "name", where, errors, required=False, limit=128) or ""
        sup = _text(h, "supervisor", where, errors, required=False)
        if hid is not None:
            if hid in halls:
                errors.append(FieldError(f"{where}.hall_id", f"{hid} appears twice"))
            halls[hid] = Hall(hid, name, sup)
    windows: dict[str, Window] = {}
    for i, w in enumerate(_items(doc, "windows", errors)):
        where = f"windows[{i}]"
        wid = _text(w, "window_id", where, errors)
        hid = _text(w, "hall_id", where, errors)
        name = _text(w, "name", where, errors, required=False, limit=128) or ""
        head = _text(w, "head", where, errors, required=False)
        if hid is not None and hid not in halls:
            errors.append(FieldError(f"{where}.hall_id", f"no hall {hid} in halls"))
        if wid is not None and hid is not None:
            if wid in windows:
                errors.append(FieldError(f"{where}.window_id", f"{wid} appears twice"))
            windows[wid] = Window(wid, hid, name, head, _list(w.get("service_types")))
    roster: list[RosterEntry] = []
    for i, r in enumerate(_items(doc, "roster", errors)):
        where = f"roster[{i}]"
        sid = _text(r, "staff_id", where, errors)
        wid = _text(r, "window_id", where, errors)
        start = _day(r.get("from"), f"{where}.from", errors)
        end = _day(r.get("to"), f"{where}.to", errors)
        if r.get("from") in (None, ""):
            errors.append(FieldError(f"{where}.from", "required"))
        if wid is not None and wid not in windows:
            errors.append(FieldError(f"{where}.window_id", f"no window {wid} in windows"))
        if start and end and end < start:
            errors.append(FieldError(f"{where}.to", "is before from"))
        if sid and wid and start:
            roster.append(RosterEntry(sid, wid, start, end))
    if errors:
        raise InvalidInput(errors, what="registry")
    return ServiceRegistry(halls, windows, tuple(roster))


def _items(doc: Mapping[str, Any], key: str, errors: list[FieldError]) -> list[Mapping[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        errors.append(FieldError(key, "expected a list"))
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            out.append(item)
        else:
            errors.append(FieldError(f"{key}[{i}]", "expected an object"))
    return out


def read_registry_json(text: str) -> ServiceRegistry:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInput(
            [FieldError("(file)", f"not valid JSON: {err.msg} at line {err.lineno}")],
            what="registry",
        ) from None
    return parse_registry(doc)


def read_registry_csv(
    halls: str | None, windows: str | None, roster: str | None
) -> ServiceRegistry:
    """The CSV form: one file per list, with the JSON form's field names as headers
    (``service_types`` ``;``-separated)."""
    doc: dict[str, list[dict[str, Any]]] = {}
    for key, text in (("halls", halls), ("windows", windows), ("roster", roster)):
        if text is not None:
            doc[key] = [dict(row) for row in csv.DictReader(io.StringIO(text))]
    return parse_registry(doc)


REGISTRY_COLUMNS = (
    "hall_id",
    "hall",
    "supervisor",
    "window_id",
    "window",
    "head",
    "service_types",
    "roster",
)


def registry_rows(reg: ServiceRegistry) -> list[dict[str, Any]]:
    """One row per window, with its hall and rostered staff (for ``registry show``)."""
    by_window: dict[str, list[str]] = {}
    for e in reg.roster:
        span = f"{e.staff_id} {e.start.isoformat()}..{e.end.isoformat() if e.end else ''}"
        by_window.setdefault(e.window_id, []).append(span)
    rows = []
    for w in sorted(reg.windows.values(), key=lambda w: (w.hall_id, w.window_id)):
        hall = reg.halls[w.hall_id]
        rows.append(
            {
                "hall_id": hall.hall_id,
                "hall": hall.name,
                "supervisor": hall.supervisor,
                "window_id": w.window_id,
                "window": w.name,
                "head": w.head,
                "service_types": list(w.service_types),
                "roster": by_window.get(w.window_id, []),
            }
        )
    return rows


def unknown_people(reg: ServiceRegistry, known: Iterable[str]) -> list[str]:
    return sorted(reg.people() - set(known))


__all__: Sequence[str] = (
    "Hall",
    "RegistryService",
    "RosterEntry",
    "ServiceRegistry",
    "Window",
    "parse_registry",
    "read_registry_csv",
    "read_registry_json",
    "registry_rows",
)


class RegistryService:
    """Loading and showing the service registry.

    Loading is an operator's act (like loading venues): the heads and supervisors it
    names need not be registered people yet, but they can act only once they are
    (``integrity staff add``); :meth:`load` reports who is missing.
    """

    def __init__(self, store: RegistryStore, people: People, clock: Clock) -> None:
        self.store = store
        self.people = people
        self.clock = clock

    def load(self, reg: ServiceRegistry, actor: str) -> tuple[int, list[str]]:
        """Replace the registry; returns the event id and the people it names who are
        not in the people registry."""
        missing = unknown_people(reg, (p.person_id for p in self.people.all()))
        return self.store.replace(reg, self.clock.now(), actor), missing

    def current(self) -> ServiceRegistry:
        return self.store.load()
