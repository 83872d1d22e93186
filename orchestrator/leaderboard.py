"""One row per run (model x dataset x task): the main metrics of its task, with their definitions.

A row carries what a reader needs to compare two numbers: the metrics profile,
the seed, the oracle information the model was given, the subset the headline
numbers are computed on, cost per requested sample (wall time and time summed
over shards, named apart) and the failure rate. The numbers are read from
`runs/<id>/metrics/summary.json` (written by `gencsp evaluate`); a run without
it is listed as not evaluated.

Formats: a rich table (terminal), CSV (raw numbers: fractions and seconds,
machine column names), Markdown and LaTeX (formatted, for papers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GencspError
from .runs import RUN_JSON

FORMATS = ("table", "csv", "markdown", "latex")
TASKS = ("csp", "generate")


class LeaderboardError(GencspError):
    """A run folder or metrics file that cannot be read."""


@dataclass(frozen=True)
class Column:
    name: str  # CSV header (raw value)
    header: str  # human header ("k" is the run's k)
    keys: tuple[str, ...]  # summary keys tried in order; "{k}" is filled in
    kind: str  # pct (fraction shown in %), num, sec, int (a count)
    help: str = ""

    def value(self, summary: dict, k: int):
        for key in self.keys:
            key = key.format(k=k)
            if key in summary:
                return summary[key]
        return None


CSP_COLUMNS = (
    Column("match_rate@k", "match@k %", ("match_rate@{k}", "match_rate"), "pct",
           "targets with a valid sample matching the truth among the run's k samples / predicted targets "
           "(StructureMatcher stol 0.5, ltol 0.3, angle 10, as CDVAE and DiffCSP)"),
    Column("rms_dist@k", "RMS@k", ("rms_dist@{k}", "rms_dist"), "num",
           "mean RMS distance of the best match, over matched targets only ((V/N)^1/3-normalised)"),
    Column("crmse@k", "cRMSE@k", ("crmse@{k}",), "num",
           "RMS mean over ALL targets, an unmatched target counting as stol = 0.5"),
    Column("strict.match_rate@k", "strict@k %", ("strict.match_rate@{k}",), "pct",
           "strict match rate: pymatgen's default tolerances (stol 0.3, ltol 0.2, angle 5)"),
    Column("valid", "valid %", ("valid",), "pct",
           "requested samples that are valid (SMACT composition, no atoms closer than 0.5 A, fingerprints)"),
)
GENERATE_COLUMNS = (
    Column("valid", "valid %", ("valid",), "pct",
           "requested samples that are valid (SMACT composition, no atoms closer than 0.5 A, fingerprints)"),
    Column("cov_recall", "COV-R %", ("cdvae.cov_recall", "cov_recall"), "pct",
           "reference crystals with a generated crystal within both fingerprint cut-offs (CDVAE definition)"),
    Column("cov_precision", "COV-P %", ("cdvae.cov_precision", "cov_precision"), "pct",
           "generated crystals with a reference crystal within both cut-offs / requested samples (CDVAE)"),
    Column("cov_recall_paired", "COV-R pair %", ("cov_recall_paired",), "pct",
           "COV-R over valid crystals, ONE partner within both cut-offs"),
    Column("cov_precision_paired", "COV-P pair %", ("cov_precision_paired",), "pct",
           "COV-P over valid crystals, ONE partner within both cut-offs"),
    Column("wdist_density", "W dens.", ("wdist_density", "cdvae.wdist_density"), "num",
           "Wasserstein distance of densities (g/cm^3), distribution subset vs reference (wdist_density)"),
    Column("wdist_num_elems", "W #elem", ("wdist_num_elems", "cdvae.wdist_num_elems"), "num",
           "Wasserstein distance of the number of elements, distribution subset vs reference (wdist_num_elems)"),
    Column("fd_crystalnn", "FD CNN", ("fd_crystalnn",), "num",
           "Frechet distance of CrystalNN (CNN) structure fingerprints, distribution subset vs reference"),
    Column("fd_chgnet", "FD CHGNet", ("fd_chgnet",), "num",
           "Frechet distance of CHGNet crystal features, distribution subset vs reference"),
    Column("unique_rate", "uniq. %", ("unique_rate",), "pct",
           "distinct structures / valid crystals (StructureMatcher defaults)"),
)
CSP_COST_COLUMNS = (
    Column("cpu_seconds_per_target", "CPU s/target", ("cpu_seconds_per_target",), "sec",
           "CPU seconds the model reported (all threads and child processes), summed / predicted targets"),
    Column("gpu_seconds_per_target", "GPU s/target", ("gpu_seconds_per_target",), "sec",
           "GPU seconds the model reported (seconds holding a GPU), summed / predicted targets"),
    Column("energy_evaluations_per_target", "evals/target", ("energy_evaluations_per_target",), "int",
           "energy/force evaluations of a potential the model reported, summed / predicted targets"),
)
# Beside the classic columns, never instead: METRe, polymorph-aware and de-duplicated matching, the
# stability ensemble (gencsp profile; docs: orchestrator/metrics/metre.py, dft/ensemble.py).
CSP_FIELD_COLUMNS = (
    Column("metre@k", "METRe@k %", ("metre@{k}",), "pct",
           "METRe: targets matched by ANY valid sample of the run, whichever target it was made for / predicted targets "
           "(CDVAE tolerances; Martirossyan et al. 2025)"),
    Column("polymorph_match_rate@k", "polym.@k %", ("polymorph_match_rate@{k}",), "pct",
           "targets not matched themselves whose samples match another reference structure of their composition "
           "(a polymorph) / predicted targets: counted apart from match@k"),
    Column("dedup.match_rate@k", "dedup match@k %", ("dedup.match_rate@{k}",), "pct",
           "match@k over de-duplicated targets (the first of each group of StructureMatcher duplicates)"),
)
GENERATE_FIELD_COLUMNS = (
    Column("metre", "METRe %", ("metre",), "pct",
           "reference crystals matched by ANY valid generated crystal / all reference crystals (CDVAE tolerances)"),
    Column("dedup.metre", "dedup METRe %", ("dedup.metre",), "pct",
           "METRe over the de-duplicated reference crystals"),
)
STABILITY_COLUMNS = (
    Column("ensemble.stable_rate@0.0eV", "stable@0 ens. %", ("ensemble.stable_rate@0.0eV",), "pct",
           "requested samples whose energy above hull, averaged over the ML potentials (each on its own hull), is "
           "<= 0.0 eV/atom (LeMat-GenBench's threshold)"),
    Column("ensemble.metastable_rate@0.1eV", "metastable@0.1 ens. %", ("ensemble.metastable_rate@0.1eV",), "pct",
           "same, <= 0.1 eV/atom (MatterGen's S.U.N. threshold)"),
    Column("ensemble.e_above_hull_std_median", "E_hull spread eV/at", ("ensemble.e_above_hull_std_median",), "num",
           "spread between potentials: median over samples of the std of their energies above hull"),
)
COST_COLUMNS = (
    Column("failed_fraction", "failed %", ("failed_fraction",), "pct",
           "requested samples without a usable structure (model failure, rejected, unsupported)"),
    Column("wall_seconds_per_sample", "wall s/sample", ("wall_seconds_per_sample",), "sec",
           "run wall time (first shard start to last shard end) / requested samples"),
    Column("summed_seconds_per_sample", "summed s/sample", ("summed_seconds_per_sample",), "sec",
           "shard times summed over shards / requested samples (about N x wall on N parallel shards)"),
)
IDENTITY = (("model", "model"), ("dataset", "dataset"), ("task", "task"), ("weights", "weights"),
            ("profile", "profile"), ("seed", "seed"), ("samples", "k / N"), ("oracle", "oracle"),
            ("subset", "headline subset"))
TABLE_IDENTITY = tuple(i for i in IDENTITY if i[0] != "task")  # a table per task names it in its title


def metric_columns(task: str) -> tuple[Column, ...]:
    if task == "csp":
        return CSP_COLUMNS + CSP_FIELD_COLUMNS + STABILITY_COLUMNS + CSP_COST_COLUMNS + COST_COLUMNS
    return GENERATE_COLUMNS + GENERATE_FIELD_COLUMNS + STABILITY_COLUMNS + COST_COLUMNS


@dataclass
class Entry:
    """A run folder as the leaderboard and the report read it."""

    path: Path
    info: dict
    summary: dict | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return self.info.get("config", {})

    @property
    def task(self) -> str:
        return str(self.config.get("task", "?"))

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def dataset(self) -> str:
        data = self.info.get("dataset", {})
        return f"{data.get('name', self.config.get('dataset'))}/{data.get('split', self.config.get('split'))}"

    @property
    def k(self) -> int:
        return int(self.config.get("samples_per_target") or 1)

    @property
    def evaluated(self) -> bool:
        return self.summary is not None

    @property
    def oracle(self) -> str:
        given = self.info.get("oracle") or []
        return ", ".join(str(o) for o in given) if given else "none"

    @property
    def requested(self) -> int | None:
        counts = self.provenance.get("counts", {})
        return counts.get("requested", self.info.get("samples_requested"))

    def samples_text(self) -> str:
        return f"k={self.k}" if self.task == "csp" else f"N={self.requested}"

    def subset_text(self) -> str:
        """The set the headline numbers are computed on, in words."""
        data = self.info.get("dataset", {})
        limit = self.config.get("limit")
        rows = data.get("rows")
        counts = self.provenance.get("counts", {})
        if self.task == "csp":
            targets = counts.get("reference", rows)
            partial = limit and (rows is None or rows >= limit)  # a limit above the split's size takes it all
            where = f"first {limit} rows of {self.dataset}" if partial else f"all of {self.dataset}"
            return f"{targets} targets ({where})"
        reference = counts.get("reference", rows)
        text = f"{self.requested} samples vs {reference} crystals of {self.dataset}"
        subset = (self.summary or {}).get("subset_size")
        return text + (f"; distribution subset {subset}" if subset is not None else "")

    @property
    def weights(self) -> dict:
        return self.info.get("weights") or {"kind": "none"}

    def weights_note(self) -> str | None:
        """The sentence that must go wherever this run's numbers appear (smoke-scale or untrained weights)."""
        from .origin import sentence

        data = self.info.get("dataset", {})
        return sentence(self.weights, (data.get("name", self.config.get("dataset")),
                                       data.get("split", self.config.get("split"))))

    def identity(self) -> dict:
        from .origin import short

        return {"model": self.model, "dataset": self.dataset, "task": self.task, "weights": short(self.weights),
                "profile": self.provenance.get("profile", "not evaluated"), "seed": self.config.get("seed"),
                "samples": self.samples_text(), "oracle": self.oracle, "subset": self.subset_text()}

    def values(self) -> dict:
        """Column name -> raw value (None: not reported)."""
        summary = self.summary or {}
        return {c.name: c.value(summary, self.k) for c in metric_columns(self.task)}

    @property
    def targets(self) -> int | None:
        return self.provenance.get("counts", {}).get("reference")

    def cost(self) -> dict:
        """Success against cost (CSP): compute seconds (GPU where held, else CPU) and evaluations, the @k curve."""
        summary = self.summary or {}
        per_target = summary.get("gpu_seconds_per_target") or summary.get("cpu_seconds_per_target")
        unit = "GPU" if summary.get("gpu_seconds_per_target") else "CPU"
        evaluations = summary.get("energy_evaluations_per_target")
        targets = self.targets
        return {"unit": unit, "compute_per_target": per_target, "evaluations_per_target": evaluations,
                "total_compute": per_target * targets if per_target is not None and targets else None,
                "total_evaluations": evaluations * targets if evaluations is not None and targets else None,
                "per_matched": summary.get("compute_seconds_per_matched_target"),
                "by_k": summary.get("match_rate_by_k") or []}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LeaderboardError(f"{path}: cannot read as JSON ({exc})") from exc


def load_entry(path) -> Entry:
    path = Path(path)
    if not (path / RUN_JSON).is_file():
        raise LeaderboardError(f"{path}: not a run directory (no {RUN_JSON})")
    summary_path, provenance_path = path / "metrics" / "summary.json", path / "metrics" / "provenance.json"
    summary = _read_json(summary_path) if summary_path.is_file() else None
    provenance = _read_json(provenance_path) if summary is not None and provenance_path.is_file() else {}
    return Entry(path, _read_json(path / RUN_JSON), summary, provenance)


def find_runs(root) -> list[Path]:
    """Run folders directly under `root` (staging folders, starting with '.', are skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: no such runs folder")
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / RUN_JSON).is_file())


def load_entries(paths, task: str | None = None) -> list[Entry]:
    entries = [load_entry(p) for p in paths]
    entries = [e for e in entries if task is None or e.task == task]
    return sorted(entries, key=lambda e: (e.task, e.dataset, e.model, e.config.get("seed") or 0, e.path.name))


# --- formatting -----------------------------------------------------------------------------------


def fmt(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "sec":
        return f"{value:.3g}"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def rows(entries: list[Entry], task: str, raw: bool = False,
         identity_columns=TABLE_IDENTITY) -> tuple[list[str], list[list]]:
    """(headers, rows) of one task's table; raw: CSV names and unformatted numbers."""
    columns = metric_columns(task)
    headers = [name if raw else header for name, header in identity_columns]
    headers += [c.name if raw else c.header for c in columns]
    out = []
    for entry in (e for e in entries if e.task == task):
        identity = entry.identity()
        values = entry.values()
        row = [identity[name] for name, _ in identity_columns]
        row += [values[c.name] if raw else fmt(values[c.name], c.kind) for c in columns]
        out.append(row)
    return headers, out


def legend(task: str) -> list[tuple[str, str]]:
    return [(c.header, c.help) for c in metric_columns(task)]


def tasks_of(entries: list[Entry]) -> list[str]:
    return [t for t in TASKS if any(e.task == t for e in entries)]


def title(task: str) -> str:
    return "CSP (structure of a given composition)" if task == "csp" else "generation (unconditional)"


def as_csv(entries: list[Entry]) -> str:
    """One CSV with the union of the columns of every task present (empty where not defined)."""
    import csv
    import io

    names = [name for name, _ in IDENTITY] + ["weights_note", "run_id", "evaluated"]
    for task in tasks_of(entries):
        names += [c.name for c in metric_columns(task) if c.name not in names]
    if "csp" in tasks_of(entries):
        names.append("match_rate_by_k")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        by_k = {"match_rate_by_k": " ".join(str(v) for v in entry.cost()["by_k"] if v is not None)} \
            if entry.task == "csp" else {}
        writer.writerow({**entry.identity(), "weights_note": entry.weights_note() or "",
                         "run_id": entry.path.name, "evaluated": entry.evaluated,
                         **{k: ("" if v is None else v) for k, v in entry.values().items()}, **by_k})
    return buffer.getvalue()


def as_markdown(entries: list[Entry]) -> str:
    parts = []
    for task in tasks_of(entries):
        headers, table = rows(entries, task)
        parts.append(f"### Leaderboard: {title(task)}\n")
        parts.append("| " + " | ".join(headers) + " |")
        parts.append("|" + "|".join("---" for _ in headers) + "|")
        parts += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table]
        parts.append("")
        parts += [f"- **weights of {e.model} ({e.path.name})**: {e.weights_note()}" for e in entries
                  if e.task == task and e.weights_note()]
        parts += [f"- **{name}**: {text}" for name, text in legend(task)]
        parts.append("")
    headers, table = cost_rows(entries)
    if table:
        parts += ["### Success against cost (CSP)\n", "| " + " | ".join(headers) + " |",
                  "|" + "|".join("---" for _ in headers) + "|", *("| " + " | ".join(map(str, r)) + " |" for r in table),
                  "", *(f"- **{name}**: {text}" for name, text in COST_LEGEND), ""]
    return "\n".join(parts)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def as_latex(entries: list[Entry]) -> str:
    """booktabs tables, one per task, with the definitions in the caption."""
    parts = []
    for task in tasks_of(entries):
        headers, table = rows(entries, task)
        caption = "; ".join(f"{name}: {text}" for name, text in legend(task))
        notes = " ".join(f"{e.model}: {e.weights_note()}" for e in entries if e.task == task and e.weights_note())
        caption += f". {notes}" if notes else ""
        align = "l" * len(TABLE_IDENTITY) + "r" * (len(headers) - len(TABLE_IDENTITY))
        parts += [r"\begin{table}", r"\centering", r"\small", r"\begin{tabular}{" + align + "}",
                  r"\toprule", " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
        parts += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table]
        parts += [r"\bottomrule", r"\end{tabular}",
                  r"\caption{" + latex_escape(f"Leaderboard, {title(task)}. {caption}.") + "}",
                  r"\end{table}", ""]
    return "\n".join(parts)


COST_LEGEND = (
    ("compute s", "CPU seconds the model reported (GPU seconds where it held a GPU), over the whole run and per "
                  "target; 'CPU s (shards)' marks a run without recorded costs: shard times summed instead"),
    ("evals", "energy/force evaluations of a potential, over the whole run and per target"),
    ("s/match", "compute seconds of the whole run / targets matched (best of k)"),
    ("@j", "match rate over the first j samples of each target (CDVAE tolerances, share of ALL targets): the @k curve"),
)


def count(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def cost_rows(entries: list[Entry]) -> tuple[list[str], list[list]]:
    """One row per evaluated CSP run: what it cost in total and per target, and its @k curve."""
    runs = [e for e in entries if e.task == "csp" and e.evaluated]
    width = max((len(e.cost()["by_k"]) for e in runs), default=0)
    headers = ["model", "compute s", "compute s/target", "evals", "evals/target", "s/match",
               *(f"@{j}" for j in range(1, width + 1))]
    out = []
    for n, entry in enumerate(runs, 1):
        cost = entry.cost()
        unit = cost["unit"]
        if cost["compute_per_target"] is None:  # no contract-1.1 costs: shard times are all there is
            unit, summed = "CPU s (shards)", (entry.summary or {}).get("summed_seconds_per_sample")
            cost["total_compute"] = summed * entry.requested if summed is not None and entry.requested else None
            cost["compute_per_target"] = cost["total_compute"] / entry.targets if cost["total_compute"] and \
                entry.targets else None
        by_k = [fmt(v, "pct") for v in cost["by_k"]] + ["-"] * (width - len(cost["by_k"]))
        out.append([f"{entry.model} [{n}]", f"{fmt(cost['total_compute'], 'sec')} {unit}",
                    fmt(cost["compute_per_target"], "sec"), count(cost["total_evaluations"]),
                    count(cost["evaluations_per_target"]), fmt(cost["per_matched"], "sec"), *by_k])
    return headers, out


TERMINAL_IDENTITY = tuple(i for i in TABLE_IDENTITY if i[0] != "subset")  # subsets printed below: long text


def rich_table(entries: list[Entry], task: str, caption: str | None = None):
    """The terminal table of one task; run names never wrap, the subsets are numbered footnotes."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    headers, body = rows(entries, task, identity_columns=TERMINAL_IDENTITY)
    table = Table(title=f"Leaderboard: {title(task)}", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD)
    for i, header in enumerate(headers):
        identity = i < len(TERMINAL_IDENTITY)
        words = [w for v in [header, *(str(r[i]) for r in body)] for w in v.split()]
        table.add_column(header, no_wrap=identity and i < 2, justify="left" if identity else "right",
                         min_width=max(map(len, words)) if i >= 2 else None)
    for n, row in enumerate(body, 1):
        table.add_row(*(escape(f"{v} [{n}]" if i == 0 else str(v)) for i, v in enumerate(row)))
    return table


def print_tables(entries: list[Entry]) -> None:
    from .console import out

    for task in tasks_of(entries):
        runs = [e for e in entries if e.task == task]
        out.print(rich_table(entries, task))
        for n, entry in enumerate(runs, 1):
            out.print(f"  [{n}] {entry.path.name}: headline subset {entry.subset_text()}", highlight=False)
            if entry.weights_note():
                out.print(f"      [yellow]{entry.weights_note()}[/]", highlight=False)
        for name, text in legend(task):
            out.print(f"  [bold]{name}[/]: {text}", highlight=False)
    headers, body = cost_rows(entries)
    if body:
        from rich import box
        from rich.table import Table

        table = Table(title="Success against cost (CSP)", box=box.SIMPLE_HEAD)
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in body:
            table.add_row(*map(str, row))
        out.print(table)
        for name, text in COST_LEGEND:
            out.print(f"  [bold]{name}[/]: {text}", highlight=False)
    missing = [e for e in entries if not e.evaluated]
    if missing:
        out.print(f"{len(missing)} run(s) not evaluated yet: gencsp evaluate RUN", highlight=False)


def render(entries: list[Entry], form: str) -> str | None:
    """The leaderboard in `form`; the rich table is printed (returns None)."""
    if form not in FORMATS:
        raise LeaderboardError(f"unknown format {form!r}; formats: {', '.join(FORMATS)}")
    if form == "table":
        print_tables(entries)
        return None
    return {"csv": as_csv, "markdown": as_markdown, "latex": as_latex}[form](entries)


def print_run_row(run_path) -> None:
    """The one-row leaderboard of a run (the bench prints it after the evaluation)."""
    from .console import out

    entry = load_entry(run_path)
    note = f"\n[yellow]{entry.weights_note()}[/]" if entry.weights_note() else ""
    out.print(rich_table([entry], entry.task, caption=f"[1] {entry.path.name}: headline subset "
                                                       f"{entry.subset_text()}{note}"))
