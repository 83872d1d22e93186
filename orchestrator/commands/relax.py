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
    parser = sub.add_parser("relax", help="relax a run's samples with ML potentials; energy above hull",
                            description="Each engine relaxes every accepted sample and places it on its own hull "
                                        "reference (relax/<engine>/). With two or more engines finished, the "
                                        "ensemble (mean and spread over engines, LeMat-GenBench) goes to "
                                        "relax/ensemble.json.")
    parser.add_argument("run", type=Path, help="run directory")
    parser.add_argument("--engine", default="chgnet",
                        help="potential(s), comma-separated: chgnet, sevennet (pip install 'gencsp[mlip]'), mace, "
                             "orb, mattersim")
    parser.add_argument("--model", action="append",
                        help="variant of the potential (e.g. 0.3.0, 7net-l3i5); ENGINE=MODEL with several engines")
    parser.add_argument("--weights", action="append",
                        help="local checkpoint file (needed by mace, orb, mattersim; replaces the wheel's for "
                             "chgnet, sevennet); ENGINE=FILE with several engines")
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


def per_engine(values: list[str] | None, engines: list[str], option: str) -> dict[str, str]:
    """`--model/--weights`: VALUE (one engine) or ENGINE=VALUE items -> {engine: value}."""
    from ..errors import GencspError

    found: dict[str, str] = {}
    for value in values or ():
        engine, sep, rest = value.partition("=")
        if sep and engine in engines:
            found[engine] = rest
        elif len(engines) == 1:
            found[engines[0]] = value
        else:
            raise GencspError(f"{option} {value!r}: with several engines write {option} ENGINE=VALUE "
                              f"(engines: {', '.join(engines)})")
    return found


def cmd_relax(args) -> int:
    from dft.ensemble import assess_ensemble
    from dft.potentials import spec

    from ..errors import GencspError
    from ..runs import Run

    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    if not engines or len(set(engines)) < len(engines):
        raise GencspError(f"--engine {args.engine!r}: give distinct potentials, comma-separated")
    for engine in engines:
        spec(engine)  # an unknown name fails before any work
    models, weights = per_engine(args.model, engines, "--model"), per_engine(args.weights, engines, "--weights")
    run = Run(args.run)
    for engine in engines:
        relax_engine(args, run, engine, models.get(engine), weights.get(engine))
    ensemble = assess_ensemble(run.path)
    if ensemble is not None:
        show_ensemble(ensemble, run.path)
    return 0


def relax_engine(args, run, engine: str, model: str | None, weights: str | None) -> dict:
    """Relax the run's samples with one engine and place them on that engine's hull reference."""
    from dft.assess import assess, build_reference
    from dft.mlip import MLIPRelaxer
    from dft.potentials import spec
    from dft.references import from_engine
    from dft.relax_run import RelaxPlan, loaded_potential, relax_dir, relax_samples, samples

    from ..console import out, table

    relaxer = MLIPRelaxer(potential=engine, model=model, weights=weights, device=args.device,
                          fmax=args.fmax, max_steps=args.steps, batch_size=args.batch_size)
    plan = RelaxPlan(workers=args.workers, chunk_size=args.chunk_size, threads=args.threads, restart=args.restart)
    run_samples = samples(run.path)
    with progress_bar(int((run_samples["status"] == "accepted").sum()), f"relaxing ({engine})") as advance:
        relaxed, timing = relax_samples(run.path, relaxer, plan, progress=advance)

    def engine_reference(pool, elements, label, prototypes):
        return from_engine(relaxer, pool, elements, label, prototypes, loaded_potential(relaxer, args.threads))

    reference = build_reference(reference_choice(args), relaxed, run.info.get("dataset", {}).get("name"),
                                engine_reference)
    summary = assess(relax_dir(run.path, relaxer.engine), run_samples, relaxed, reference, relaxer.engine,
                     spec(engine).corrections, extra={"relax_wall_seconds": timing["wall_seconds"]},
                     metrics_table=run.path / "metrics" / "structures.parquet")
    rows = [[k, _fmt(summary.get(k))] for k in (
        "samples_requested", "relaxed_ok", "relax_failed", "converged", "stable_rate", "metastable_rate",
        "sun_rate", "msun_rate", "lowest_is_match_rate", "rmsd_mean", "relax_wall_seconds", "relax_seconds_summed")
        if k in summary]
    out.print(table(f"relax {run.path.name} ({relaxer.engine})", ["", "value"], rows))
    identity = relaxer.identity()
    out.print(f"{engine}: {identity['package']} {identity['version']}, model {identity['model']}, checkpoint sha256 "
              f"{identity['checkpoint_sha256']}", highlight=False)
    if summary["reference"]:
        out.print(f"hull reference: {summary['reference']['description']}; corrections: {summary['scheme']}; "
                  f"stable <= {summary['stable_threshold_ev_per_atom']} eV/atom, metastable <= "
                  f"{summary['metastable_threshold_ev_per_atom']} eV/atom", highlight=False)
    if summary.get("sun_note"):
        out.print(summary["sun_note"], highlight=False)
    out.print(f"wrote {relax_dir(run.path, relaxer.engine)}", highlight=False)
    return summary


def show_ensemble(result: dict, run_path: Path) -> None:
    """Per-engine rates at both thresholds, the ensemble's, and the spread between engines."""
    from dft.ensemble import THRESHOLDS

    from ..console import out, table

    names = list(THRESHOLDS)
    rows = [[e["engine"], *(_fmt(e[n]) for n in names), e["samples_with_value"],
             f"{e['identity'].get('version')} / {str(e['identity'].get('checkpoint_sha256'))[:12]}"]
            for e in result["engines"]]
    ens = result["ensemble"]
    rows.append(["ensemble (per-sample mean)", *(_fmt(ens[n]) for n in names), ens["samples_with_value"], ""])
    rows.append(["engines: mean ± std", *(f"{ens[f'engine_mean.{n}']:.4g} ± {ens[f'engine_std.{n}']:.2g}"
                                           for n in names), "", ""])
    out.print(table(f"stability ensemble of {len(result['engines'])} potentials ({result['samples_requested']} "
                    "requested samples)", ["engine", *names, "samples with E_hull", "version / checkpoint sha256"],
                    rows))
    spread = ens["e_above_hull_std_mean"]
    out.print("stable: E_hull <= 0.0 eV/atom; metastable: E_hull <= 0.1 eV/atom; each engine against its own hull. "
              "Spread between potentials (std of E_hull over engines, per sample): mean "
              f"{_fmt(spread)} eV/atom, median {_fmt(ens['e_above_hull_std_median'])}, max "
              f"{_fmt(ens['e_above_hull_std_max'])}; wrote {run_path / 'relax' / 'ensemble.json'}", highlight=False)


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
