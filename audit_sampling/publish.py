"""Step 4, publication: the bundle anyone can verify without the database.

A folder with the frame file (byte-exact, as stored) and ``sample.json``, or one
JSON document holding both (:mod:`audit_sampling.formats`). Pull manifests and
their exports may be added to a bundle folder by whoever holds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audit_sampling.context import NOT_APPLICABLE, AuditContext
from audit_sampling.formats import (
    FRAME_FILE,
    SAMPLE_FILE,
    bundle_document,
    manifest_text,
)
from audit_sampling.formats import sample_manifest as manifest_of
from audit_sampling.records import frame_chunks, load_frame, load_sample, sample_items, strata


def sample_manifest(ctx: AuditContext, sample_ref: int | str | None) -> dict[str, Any]:
    """The public record of a sample (default: the latest): ``sample.json``."""
    sample = load_sample(ctx, sample_ref)
    frame = load_frame(ctx, sample.frame_id)
    return manifest_of(
        sample,
        frame,
        strata(ctx, sample.sample_id),
        sample_items(ctx, sample.sample_id),
        NOT_APPLICABLE,
    )


def publish(
    ctx: AuditContext, sample_ref: int | str | None, out: Path, single: bool = False
) -> list[Path]:
    """Write the verification bundle of a sample; returns the files written.

    ``out`` is a folder (``frame.csv`` and ``sample.json``), or with ``single`` one
    JSON document (``integrity-audit-bundle/v1``).
    """
    manifest = sample_manifest(ctx, sample_ref)
    frame_id = int(manifest["frame"]["frame_id"])
    if single:
        text = b"".join(frame_chunks(ctx, frame_id)).decode("utf-8")
        doc = bundle_document(text, manifest)
        out.write_text(json.dumps(doc, ensure_ascii=False) + "\n", "utf-8")
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    frame_path = out / FRAME_FILE
    with open(frame_path, "wb") as f:
        for chunk in frame_chunks(ctx, frame_id):
            f.write(chunk)
    sample_path = out / SAMPLE_FILE
    sample_path.write_text(manifest_text(manifest), "utf-8")
    return [frame_path, sample_path]
