"""SQL tables owned by `appeals`, on the ledger's shared metadata (see integrity/adapters/tables.py)."""

from __future__ import annotations

from integrity.adapters.tables import metadata  # noqa: F401 - tables register on it
