"""Kind ``export_images``: the run's figures (loss, lens, path) as PNG and/or SVG through
kaleido (``backend.plots.exports.export_images``), written into the run's derived exports
folder (``exports_dir``). Needs no model: it runs on the ``cpu`` device lock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from backend.errors import InputError
from backend.jobs import params as P
from backend.jobs.kinds.common import short
from backend.jobs.queue import JobContext

IMAGE_FORMATS = ("png", "svg")
MAX_SCALE = 8.0


@dataclass(frozen=True)
class ExportImagesParams:
    key: str
    formats: list[str] = field(default_factory=lambda: ["png"])
    scale: float = 1.0

    def checked(self, store, kind: str) -> ExportImagesParams:
        if not self.formats:
            raise InputError(f"job kind '{kind}': formats is empty (use png, svg or both)")
        for fmt in self.formats:
            if fmt not in IMAGE_FORMATS:
                raise InputError(f"job kind '{kind}': formats: '{fmt}' is not one of {', '.join(IMAGE_FORMATS)}")
        if not (math.isfinite(self.scale) and 0 < self.scale <= MAX_SCALE):
            raise InputError(f"job kind '{kind}': scale {self.scale} must lie in (0, {MAX_SCALE:g}]")
        return replace(self, key=P.resolve_key(store, self.key, kind), formats=list(dict.fromkeys(self.formats)))


def exports_dir(run, store) -> Path:
    """The run's derived exports folder (named in ``store/schema.py``), where ``export_images`` writes."""
    from backend.store.derived import exports_dir as derived_exports_dir

    folder = derived_exports_dir(run, store)
    if folder is None:
        raise InputError(f"run {short(run.key)}: no writable derived folder for its exported images")
    return folder


def export_title(p: ExportImagesParams) -> str:
    return f"Export images: {short(p.key)} ({', '.join(p.formats)})"


def export_estimate(p: ExportImagesParams, queue, device: str):
    from backend.jobs.kinds.models import derived_estimate

    return derived_estimate("export_images", p.key, queue, device, formats=p.formats)


def run_export_images(p: ExportImagesParams, ctx: JobContext) -> None:
    from backend.plots import exports

    run = ctx.store.open(p.key)
    out = exports_dir(run, ctx.store)
    written: list[Path] = []
    for i, fmt in enumerate(p.formats):
        ctx.progress("export", i, len(p.formats))
        written += exports.export_images(run, out, fmt, scale=p.scale)
    ctx.progress("export", len(p.formats), len(p.formats))
    ctx.add_result(p.key)
    ctx.message(f"{len(written)} image(s) in {out}")
    ctx.set_value(written)
