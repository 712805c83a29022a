"""One small error hierarchy for the whole engine.

The CLI maps these to one-line messages and exit codes, the HTTP layer to status
codes. A driver error (SQLAlchemy, redis-py) never leaves an adapter as itself:
it becomes :class:`BackendUnavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of an input: ``field`` is a dotted path (``scores.attitude``)."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidInput(EngineError):
    """Input that does not parse; carries field-level errors. Nothing was written."""

    def __init__(self, errors: list[FieldError], what: str = "rating") -> None:
        self.errors = errors
        self.what = what
        super().__init__(self.summary())

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[list[FieldError], str]]:
        # pickled as what it was made of (a batch's parsing process sends it back)
        return (type(self), (self.errors, self.what))

    def summary(self) -> str:
        parts = [f"{e.field}: {e.message}" for e in self.errors]
        return f"invalid {self.what}: " + "; ".join(parts)


class NotFound(EngineError):
    """The thing asked for does not exist."""


class Conflict(EngineError):
    """A concurrent or repeated change lost: the caller should re-read and decide again."""


class AlreadyExists(Conflict):
    """A unique key was already taken (a record made twice, or a race another writer won)."""


class PermissionDenied(EngineError):
    """The acting person may not do this."""


class Unauthenticated(PermissionDenied):
    """No valid credential: none, an unknown, expired or revoked token or intake key, or
    an unsafe token file (HTTP 401; the CLI's exit 1)."""


class PolicyViolation(EngineError):
    """The request is well-formed but a business rule forbids it."""


class BackendUnavailable(EngineError):
    """A backing service (database, Redis) did not answer; nothing was half-written.

    ``retry_after_s``: seconds until a retry is worth making, when the raiser knows it
    (a circuit breaker's cool-down); ``None`` otherwise.
    """

    def __init__(self, *args: object, retry_after_s: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after_s = retry_after_s


class ConfigError(EngineError):
    """The instance or a rule set is misconfigured."""
