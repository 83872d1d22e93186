"""The HTML report of one or more runs: a single self-contained file, and its figures as PNG and SVG.

Modules: `data` (what is read from run folders), `figures` (matplotlib figures,
pure), `pictures` (a crystal cell drawn with ASE), `html` (page building
blocks), `sections` (the report's sections). The page needs no network to be
read: CSS is inline, images are data URIs, there is no script.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

READING_GUIDE = (
    "How to read it: each section compares the runs of one task on one dataset with that dataset's reference "
    "crystals (grey). Rates count every requested sample or target, so a sample the model failed to produce "
    "counts against it; distributions are over the valid samples. The leaderboard names the subset each "
    "headline number is computed on; every metric is defined below its table and in the figure captions.")


@dataclass(frozen=True)
class ReportSettings:
    title: str = "gencsp report"
    gallery: int = 6  # matched CSP targets pictured per run
    evaluate: bool = True  # evaluate runs that have no metrics yet (gencsp profile)


@dataclass
class ReportResult:
    html: Path
    files_dir: Path
    files: list[Path]


def files_dir(out: Path) -> Path:
    """`report.html` -> `report_files/` beside it."""
    return out.with_name(out.stem + "_files")


def evaluate_missing(paths: list[Path]) -> None:
    from ..console import out
    from ..leaderboard import load_entry
    from ..metrics import evaluate_run

    for path in paths:
        entry = load_entry(path)
        if not entry.evaluated and (entry.path / "structures.parquet").is_file():
            out.print(f"evaluating {entry.path.name} (no metrics yet)", highlight=False)
            evaluate_run(entry.path, seed=int(entry.config.get("seed") or 0))


def build_report(run_paths, out, settings: ReportSettings = ReportSettings()) -> ReportResult:
    from datetime import UTC, datetime

    from .. import __version__
    from ..atomic import write_text
    from ..errors import GencspError
    from . import field_metrics, html, sections
    from .data import label_runs, load_run

    paths = [Path(p) for p in run_paths]
    if not paths:
        raise GencspError("give at least one run directory")
    if settings.evaluate:
        evaluate_missing(paths)
    runs = [load_run(p) for p in paths]
    label_runs(runs)
    out = Path(out)
    final = files_dir(out)
    staging = final.with_name(f".{final.name}.writing")  # the figures of an earlier report are replaced whole
    shutil.rmtree(staging, ignore_errors=True)
    renderer = sections.Renderer(staging, final.name)
    comparison, toc = sections.comparison(runs, renderer, settings.gallery)
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [html.heading(1, settings.title),
            html.paragraph(f"{len(runs)} run(s): " + "; ".join(r.label for r in runs) + f". Made {made} with "
                           f"gencsp {__version__}. Figures are also saved as PNG and SVG in "
                           f"{final.name}/ beside this file.", "lead"),
            html.paragraph(READING_GUIDE),
            html.contents([("provenance", "Runs and provenance"), ("leaderboard", "Leaderboard"), *toc,
                           (field_metrics.ANCHOR, field_metrics.TITLE), ("cost", "Time per sample"),
                           ("failed", "Failed samples")]),
            *sections.provenance(runs), *sections.leaderboards(runs), *comparison, *field_metrics.section(runs),
            *sections.cost(runs, renderer), *sections.failures(runs)]
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    write_text(out, html.page(settings.title, body))
    return ReportResult(out, final, [final / p.relative_to(staging) for p in renderer.written])
