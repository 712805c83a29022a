"""The supervisor's pages, spreadsheets and the public release of a period.

A package on the core's ports (it imports only the core): it reads the period's
figures through :class:`~integrity.reports.ReportService` and the core's extension
points (the audit's and appeals' figures, the follow-up loop's columns) and renders
them:

- :mod:`publishing.month`: :class:`Pages` gathers a period's figures for one reader
  under the read policy (:class:`PeriodView`);
- :mod:`publishing.charts`: the charts, as inline SVG (matplotlib);
- :mod:`publishing.page`: the supervisor's page, one self-contained HTML file;
- :mod:`publishing.book`: the same tables as an ``.xlsx`` workbook;
- :mod:`publishing.release`: the public release (JSON, CSV, HTML, manifest) and its
  ledger event; :mod:`publishing.verify` checks one with no database;
- :mod:`publishing.http`: ``GET /v1/reports/page`` and ``/v1/reports/book``;
- :mod:`publishing.commands`: ``integrity report page|book``, ``integrity publish``.
"""

from __future__ import annotations

from publishing.month import Pages, PeriodView
from publishing.release import Published, Releases

__all__ = ["Pages", "PeriodView", "Published", "Releases"]
