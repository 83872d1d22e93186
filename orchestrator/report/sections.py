"""The sections of the report, each a list of HTML fragments, from run data and figures."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import leaderboard
from . import figures, html
from .data import failed_samples, groups, reference_cifs, reference_facts, spacegroup_label

FAILED_EXAMPLES = 25


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


@dataclass
class Renderer:
    """Writes each figure as PNG and SVG into the files folder and returns its HTML."""

    folder: Path  # where the files are written now
    name: str  # the folder's name once in place, as the page cites it
    written: list[Path] = field(default_factory=list)

    def save(self, figure, stem: str, formats=("png", "svg")) -> bytes:
        from ..atomic import write_bytes

        png = b""
        for form in formats:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=form, dpi=110 if form == "png" else None)
            path = self.folder / f"{stem}.{form}"
            write_bytes(path, buffer.getvalue())
            self.written.append(path)
            png = buffer.getvalue() if form == "png" else png
        figure.clear()
        return png

    def plot(self, plot: figures.Plot | None) -> str:
        if plot is None:
            return ""
        png = self.save(figures.titled(plot).figure, plot.name)
        files = [f"{self.name}/{plot.name}.{form}" for form in ("png", "svg")]
        return html.figure(png, plot.title, plot.caption, files)


def _short(text, length: int = 12) -> str:
    text = str(text or "")
    return text[:length] + "…" if len(text) > length else text


def _field(data, key):
    """data[key] when data is a dict (run.json holds some records as a dict or a plain string)."""
    return data.get(key) if isinstance(data, dict) else data


def _image(info: dict) -> str:
    """The container the samples came from: Docker image id, or SIF file and its sha256."""
    runtime = info.get("runtime") if isinstance(info.get("runtime"), dict) else {}
    if runtime.get("image_id"):
        return f"{runtime.get('image', '?')} ({_short(runtime['image_id'], 19)})"
    if runtime.get("sif"):
        return f"{Path(runtime['sif']).name} (sha256 {_short(runtime.get('sif_sha256'), 12) or 'not recorded'})"
    return _short(_field(info.get("image"), "digest"), 40) or "none (local runtime)"


def _archive(info: dict) -> str:
    """The sha256 of the upstream archive the image was built from (an image label)."""
    runtime = info.get("runtime") if isinstance(info.get("runtime"), dict) else {}
    sha = (runtime.get("labels") or {}).get("gencsp.upstream.sha256")
    return f" (archive sha256 {_short(sha, 16)})" if sha else ""


def leaderboard_short(entry) -> str:
    from ..origin import short

    return short(entry.weights)


def _run_fields(entry) -> list[tuple[str, object]]:
    info, config, prov = entry.info, entry.config, entry.provenance
    card = info.get("model_card") or {}
    upstream = card.get("upstream") or {}
    realised = info.get("realisation")
    return [
        ("run id", entry.path.name),
        ("model (family)", f"{entry.model} ({card.get('family', '?')})"),
        ("upstream code", f"{upstream['repo']} @ {upstream.get('commit', '?')}{_archive(info)}"
         if upstream.get("repo") else "none (written in this repository)"),
        ("weights", entry.weights_note() or leaderboard_short(entry)),
        ("checkpoint sha256", _short(_field(info.get("checkpoint"), "sha256")) or "-"),
        ("image", _image(info)),
        ("runtime / executor", f"{_field(info.get('runtime'), 'runtime') or '?'} / {info.get('executor', '?')}"),
        ("task", entry.task),
        ("dataset / split", entry.dataset),
        ("dataset sha256", (info.get("dataset") or {}).get("sha256") or "-"),
        ("samples", f"{entry.requested} requested; {entry.samples_text()}"),
        ("headline subset", entry.subset_text()),
        ("seed (sampling)", config.get("seed")),
        ("oracle information given", entry.oracle),
        ("model options", ", ".join(f"{k}={v}" for k, v in (config.get("options") or {}).items()) or "defaults"),
        ("Wyckoff realisation", f"yes: {_field(realised, 'settings')}" if realised else "not needed"),
        ("metrics profile / seed", f"{prov.get('profile', 'not evaluated')} / {prov.get('seed', '-')}"),
        ("symprec (space groups)", prov.get("symprec", "-")),
        ("gencsp version (run / metrics)", f"{info.get('gencsp_version')} / {prov.get('gencsp_version', '-')}"),
        ("libraries (metrics)", ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items()) or "-"),
        ("created / evaluated", f"{str(info.get('created', '?'))[:19]} / {str(prov.get('created', '-'))[:19]}"),
    ]


def provenance(runs) -> list[str]:
    """One column per run: where its numbers come from."""
    columns = [_run_fields(r.entry) for r in runs]
    fields = [[name, *(column[i][1] for column in columns)] for i, (name, _) in enumerate(columns[0])]
    out = [html.heading(2, "Runs and provenance", "provenance"),
           html.paragraph("Where every number of this report comes from. Full records: run.json and "
                          "metrics/provenance.json in each run folder."),
           html.table(["", *(r.label for r in runs)], fields, numeric=False, css="fields")]
    notes = [(r.label, n) for r in runs for n in r.entry.provenance.get("notes", [])]
    if notes:
        out.append(html.definitions([(f"note ({label})", text) for label, text in notes]))
    return out


def leaderboards(runs) -> list[str]:
    entries = [r.entry for r in runs]
    out = [html.heading(2, "Leaderboard", "leaderboard"),
           html.paragraph("One row per run. Rates are percentages of ALL targets (CSP) or ALL requested samples "
                          "(generation): failed, rejected and unsupported samples count against the model. Hover a "
                          "header for its definition.")]
    for task in leaderboard.tasks_of(entries):
        members = [e for e in entries if e.task == task]
        headers, rows = leaderboard.rows(members, task, identity_columns=leaderboard.TERMINAL_IDENTITY)
        for n, row in enumerate(rows, 1):
            row[0] = f"{row[0]} [{n}]"
        legend = leaderboard.legend(task)
        subsets = [(f"[{n}]", f"{e.path.name}: headline subset {e.subset_text()}"
                     + (f". {e.weights_note()}" if e.weights_note() else ""))
                   for n, e in enumerate(members, 1)]
        out += [html.heading(3, leaderboard.title(task)), html.table(headers, rows, dict(legend), css="board"),
                html.definitions(subsets + legend)]
    return out


def group_section(key, runs, renderer: Renderer, gallery_size: int) -> list[str]:
    task, dataset = key
    prefix = slug(f"{task}-{dataset}") + "-"
    anchor = slug(f"{task}-{dataset}")
    name = leaderboard.title(task)
    out = [html.heading(2, f"{dataset}: {name}", anchor)]
    evaluated = [r for r in runs if r.metrics is not None]
    if len(evaluated) < len(runs):
        out.append(html.note("Not evaluated (no metrics/): " + ", ".join(r.label for r in runs if r.metrics is None)
                             + ". Run `gencsp evaluate RUN` to fill their figures."))
    texts, reference_text = reference_cifs(runs)
    records = (evaluated[0].entry.provenance.get("settings") or {}).get("records") if evaluated else None
    reference = reference_facts(texts, records)
    symprec = (records or {}).get("symprec", 0.1)
    out.append(html.paragraph(f"Reference: {reference_text}. Runs: "
                              + "; ".join(f"{r.label} ({r.entry.samples_text()})" for r in runs) + "."))
    out += [html.note(f"{r.label}: {r.entry.weights_note()}") for r in runs if r.entry.weights_note()]
    for plot in (figures.validity(runs, prefix), figures.rates(runs, prefix),
                 figures.density(runs, reference, reference_text, prefix),
                 figures.number_of_elements(runs, reference, reference_text, prefix),
                 figures.space_groups(runs, reference, reference_text, prefix, symprec),
                 figures.crystal_systems(runs, reference, reference_text, prefix)):
        out.append(renderer.plot(plot))
    hull = figures.energy_above_hull(runs, prefix)
    out.append(renderer.plot(hull) if hull else html.paragraph(
        "Energy above the hull: no relaxations yet (run `gencsp relax RUN` to add this figure).", "muted"))
    if task == "csp":
        for run in runs:
            out += gallery(run, renderer, gallery_size, prefix)
    return out


def gallery(run, renderer: Renderer, size: int, prefix: str) -> list[str]:
    from .pictures import cell_figure

    out = [html.heading(3, f"Matched structures: {run.label}")]
    if run.metrics is None or run.truths is None or "rms_loose" not in run.metrics:
        return out + [html.paragraph("Not evaluated: no matches to show.", "muted")]
    matched = run.metrics[run.metrics["valid"].astype(bool) & run.metrics["rms_loose"].notna()]
    best = matched.sort_values(["rms_loose", "target_id"]).groupby("target_id", sort=False).head(1).head(size)
    if best.empty:
        return out + [html.paragraph("No target was matched by any sample of this run.", "muted")]
    truths = run.truths.set_index("target_id")
    items = []
    for row in best.itertuples():
        truth = truths.loc[row.target_id]
        stem = f"gallery/{prefix}{slug(run.label)}-{slug(str(row.target_id))}"
        truth_png = renderer.save(cell_figure(truth["cif"], f"truth {truth['formula']}"), f"{stem}-truth", ("png",))
        pred_png = renderer.save(cell_figure(row.cif, f"sample {row.sample_index}"), f"{stem}-sample", ("png",))
        strict = "yes" if row.rms_strict == row.rms_strict else "no"  # NaN: no strict match
        caption = (f"Target {row.target_id} ({truth['formula']}): truth (left) and sample {row.sample_index} "
                   f"(right). RMS {row.rms_loose:.3f} (CDVAE tolerances); strict match: {strict}; space group "
                   f"truth {_group(row.truth_spacegroup)}, sample {_group(row.spacegroup)}.")
        items.append(html.pair(truth_png, pred_png, caption))
    total = matched["target_id"].nunique()
    return out + [html.paragraph(f"{len(items)} of the {total} matched targets, lowest RMS distance first. Cells "
                                 "as written by the model and in the dataset (the matcher compares them up to "
                                 "the choice of cell); atoms in Jmol colours.", "muted"), html.gallery(items)]


def _group(number) -> str:
    try:
        return spacegroup_label(int(number))
    except (TypeError, ValueError):
        return "unknown"


def cost(runs, renderer: Renderer) -> list[str]:
    out = [html.heading(2, "Time per sample", "cost"), renderer.plot(figures.time_per_sample(runs))]
    rows = []
    for run in runs:
        summary = run.entry.summary or {}
        rows.append([run.label, run.entry.requested, *(leaderboard.fmt(summary.get(k), "sec") for k in (
            "model_seconds_per_sample", "wall_seconds_per_sample", "summed_seconds_per_sample"))])
    out.append(html.table(["run", "requested samples", "model-reported s/sample", "wall s/sample",
                           "summed over shards s/sample"], rows))
    return out


def failures(runs) -> list[str]:
    out = [html.heading(2, "Failed samples", "failed"),
           html.paragraph("Samples that did not give a valid structure: rejected by validation (the model failed, "
                          "or returned an unreadable, disordered or wrong structure) or accepted but invalid "
                          "under the metrics' rules.")]
    for run in runs:
        failed = failed_samples(run)
        out.append(html.heading(3, f"{run.label}: {len(failed)} of {len(run.samples)} requested samples"))
        if failed.empty:
            out.append(html.paragraph("None.", "muted"))
            continue
        counts = failed.groupby(["stage", "reason"]).size().reset_index(name="samples")
        counts = counts.sort_values("samples", ascending=False)
        out.append(html.table(["stage", "reason", "samples"], counts.values.tolist()))
        examples = failed.head(FAILED_EXAMPLES)
        out.append(html.table(["target", "sample", "stage", "reason", "message"],
                              [[r.target_id, r.sample_index, r.stage, r.reason, str(r.message)[:200]]
                               for r in examples.itertuples()]))
        if len(failed) > FAILED_EXAMPLES:
            out.append(html.paragraph(f"{len(failed) - FAILED_EXAMPLES} more: see structures.parquet and "
                                      "metrics/structures.parquet in the run folder.", "muted"))
    return out


def comparison(runs, renderer: Renderer, gallery_size: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Every (task, dataset) group's section, and its table-of-contents entries."""
    out, toc = [], []
    for key, members in groups(runs).items():
        out += group_section(key, members, renderer, gallery_size)
        toc.append((slug(f"{key[0]}-{key[1]}"), f"{key[1]}: {leaderboard.title(key[0])}"))
    return out, toc
