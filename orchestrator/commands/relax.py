"""gencsp relax RUN: relax accepted samples with an ML potential, then energy above hull and stability."""

from __future__ import annotations

from pathlib import Path

from .values import positive_int


def add_reference_arguments(parser) -> None:
    group = parser.add_argument_group("hull reference")
    group.add_argument("--reference", default="auto", choices=("auto", "file", "mp", "engine", "none"),
                       help="auto: --reference-entries if given, else Materials Project when MP_API_KEY is set, "
                            "else energies computed with the same engine")
    group.add_argument("--reference-entries", help="file of pymatgen computed entries (JSON, .json.gz)")
    group.add_argument("--reference-dataset", help="engine reference: dataset whose structures join the hull "
                                                   "(default: the run's dataset)")
    group.add_argument("--reference-split", default="train", help="engine reference: split of that dataset")
    group.add_argument("--element-prototypes", default=None,
                       help="engine reference: comma-separated prototypes tried per element "
                            "(default fcc,bcc,hcp,diamond,sc,dimer)")


def reference_choice(args):
    from dft.assess import ReferenceChoice
    from dft.elements import PROTOTYPES

    prototypes = tuple(p.strip() for p in args.element_prototypes.split(",")) if args.element_prototypes else PROTOTYPES
    return ReferenceChoice(source=args.reference, entries=args.reference_entries, dataset=args.reference_dataset,
                           split=args.reference_split, prototypes=prototypes)


def register(sub) -> None:
    parser = sub.add_parser("relax", help="relax a run's samples with an ML potential; energy above hull")
    parser.add_argument("run", type=Path, help="run directory")
    parser.add_argument("--engine", default="chgnet", help="potential: chgnet, sevennet, mace, orb, mattersim")
    parser.add_argument("--model", help="variant of the potential (e.g. 0.3.0, 7net-l3i5)")
    parser.add_argument("--weights", help="local weights file (mace, orb, mattersim)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/A")
    parser.add_argument("--steps", type=positive_int, default=500, help="maximum FIRE steps per structure")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="structures per potential call")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes, each with its own potential")
    parser.add_argument("--threads", type=positive_int, help="torch threads per worker (default 1; use --workers for more cores)")
    parser.add_argument("--chunk-size", type=positive_int, default=64, help="samples per part file (resume unit)")
    parser.add_argument("--restart", action="store_true", help="discard earlier relaxations of this engine")
    add_reference_arguments(parser)
    parser.set_defaults(func=cmd_relax)


def cmd_relax(args) -> int:
    from dft.assess import assess, build_reference
    from dft.mlip import MLIPRelaxer
    from dft.potentials import spec
    from dft.references import from_engine
    from dft.relax_run import RelaxPlan, loaded_potential, relax_dir, relax_samples, samples

    from ..console import out, table
    from ..runs import Run

    run = Run(args.run)
    relaxer = MLIPRelaxer(potential=args.engine, model=args.model, weights=args.weights, device=args.device,
                          fmax=args.fmax, max_steps=args.steps, batch_size=args.batch_size)
    spec(args.engine)  # an unknown name fails before any work
    plan = RelaxPlan(workers=args.workers, chunk_size=args.chunk_size, threads=args.threads, restart=args.restart)
    run_samples = samples(run.path)
    with progress_bar(int((run_samples["status"] == "accepted").sum()), "relaxing") as advance:
        relaxed, timing = relax_samples(run.path, relaxer, plan, progress=advance)

    def engine_reference(pool, elements, label, prototypes):
        return from_engine(relaxer, pool, elements, label, prototypes, loaded_potential(relaxer, args.threads))

    reference = build_reference(reference_choice(args), relaxed, run.info.get("dataset", {}).get("name"),
                                engine_reference)
    summary = assess(relax_dir(run.path, relaxer.engine), run_samples, relaxed, reference, relaxer.engine,
                     spec(args.engine).corrections, extra={"relax_wall_seconds": timing["wall_seconds"]},
                     metrics_table=run.path / "metrics" / "structures.parquet")
    rows = [[k, _fmt(summary.get(k))] for k in (
        "samples_requested", "relaxed_ok", "relax_failed", "converged", "stable_rate", "metastable_rate",
        "sun_rate", "msun_rate", "lowest_is_match_rate", "rmsd_mean", "relax_wall_seconds", "relax_seconds_summed")
        if k in summary]
    out.print(table(f"relax {run.path.name} ({relaxer.engine})", ["", "value"], rows))
    if summary["reference"]:
        out.print(f"hull reference: {summary['reference']['description']}; corrections: {summary['scheme']}; "
                  f"stable <= {summary['stable_threshold_ev_per_atom']} eV/atom, metastable <= "
                  f"{summary['metastable_threshold_ev_per_atom']} eV/atom", highlight=False)
    if summary.get("sun_note"):
        out.print(summary["sun_note"], highlight=False)
    out.print(f"wrote {relax_dir(run.path, relaxer.engine)}", highlight=False)
    return 0


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class progress_bar:
    """A rich progress bar (stderr), as a context manager yielding `advance(n)`."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label

    def __enter__(self):
        from rich.progress import Progress

        from ..console import err

        self.bar = Progress(console=err, transient=True)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        self.bar.stop()
        return False
