"""gencsp dft submit|status|collect RUN: DFT relaxations (VASP on clusters, GPAW anywhere) of a run's samples."""

from __future__ import annotations

from pathlib import Path

from .bench import parse_options
from .relax import add_reference_arguments, progress_bar, reference_choice
from .values import positive_int


def register(sub) -> None:
    parser = sub.add_parser("dft", help="DFT relaxations of a run's samples: submit, status, collect")
    commands = parser.add_subparsers(dest="dft_command", metavar="STEP", required=True)

    submit = commands.add_parser("submit", help="write task folders and submit them (SLURM array, or here)")
    submit.add_argument("run", type=Path)
    submit.add_argument("--engine", required=True, choices=("vasp", "gpaw"))
    submit.add_argument("--set", action="append", metavar="KEY=VALUE", dest="settings",
                        help="engine setting (repeatable), e.g. ecut=500, input_set=MPScanRelaxSet, runner=plain")
    submit.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                        help="slurm: one array task per structure (needs --profile); local: run here")
    submit.add_argument("--profile", help="slurm: cluster profile (see `gencsp clusters`)")
    submit.add_argument("--set-profile", action="append", metavar="KEY=VALUE", help="override a profile value")
    submit.add_argument("--select", default="all", choices=("all", "stable-by-mlip", "metastable-by-mlip"))
    submit.add_argument("--mlip", default="chgnet", help="the MLIP relaxation --select reads")
    submit.add_argument("--top", type=positive_int, help="at most N samples (lowest MLIP energy above hull first)")
    submit.add_argument("--max-atoms", type=positive_int, help="only samples with at most N atoms")
    submit.add_argument("--references", default="auto", choices=("auto", "none", "elements", "elements+dataset"),
                        help="hull reference tasks of the same engine (auto: elements for gpaw, none for vasp)")
    submit.add_argument("--element-prototypes", default="ground",
                        help="prototypes per element: ground (one per element where known) or a list, e.g. fcc,bcc")
    submit.add_argument("--reference-dataset", help="elements+dataset: dataset (default: the run's)")
    submit.add_argument("--reference-split", default="train")
    submit.add_argument("--workers", type=positive_int, default=1, help="local: tasks at once")
    submit.add_argument("--retry-failed", action="store_true", help="submit failed tasks again")
    submit.add_argument("--wait", action="store_true", help="slurm: wait until the array has left the queue")
    submit.set_defaults(func=cmd_submit)

    status = commands.add_parser("status", help="count the tasks in each state")
    status.add_argument("run", type=Path)
    status.add_argument("--engine", choices=("vasp", "gpaw"))
    status.set_defaults(func=cmd_status)

    collect = commands.add_parser("collect", help="parse finished tasks, record failed ones, energy above hull")
    collect.add_argument("run", type=Path)
    collect.add_argument("--engine", required=True, choices=("vasp", "gpaw"))
    add_reference_arguments(collect)
    collect.set_defaults(func=cmd_collect)


def cmd_submit(args) -> int:
    from dft.queue import make_maker, run_local, slurm_queue, submit_slurm, to_submit
    from dft.tasks import DftFolder, reference_specs, select

    from ..console import out
    from ..errors import GencspError
    from ..runs import Run

    run = Run(args.run)
    maker = make_maker(args.engine, parse_options(args.settings))
    if args.executor == "slurm" and not args.profile:
        raise GencspError("--executor slurm needs --profile P (see `gencsp clusters`), or use --executor local")
    samples = select(run.path, args.select, args.top, args.max_atoms, args.mlip)
    how = args.references if args.references != "auto" else ("elements" if args.engine == "gpaw" else "none")
    prototypes = tuple(p.strip() for p in args.element_prototypes.split(","))
    dataset = args.reference_dataset or run.info.get("dataset", {}).get("name")
    specs = samples + reference_specs(samples, how, prototypes, dataset, args.reference_split)
    folder = DftFolder(run.path, args.engine)
    added = folder.add(specs, maker)
    out.print(f"{len(samples)} sample(s) selected ({args.select}); {len(added)} new task folder(s) in {folder.path}",
              highlight=False)
    if args.executor == "local":
        chosen = to_submit(folder, maker, args.retry_failed, None)
        with progress_bar(len(chosen), f"{args.engine} (local)") as advance:
            run_local(maker, chosen, args.workers, advance)
        out.print(f"ran {len(chosen)} task(s) here; `gencsp dft collect {run.path} --engine {args.engine}`",
                  highlight=False)
        return 0
    from .. import clusters

    profile = clusters.get(args.profile, clusters.parse_overrides(args.set_profile))
    chosen = to_submit(folder, maker, args.retry_failed, slurm_queue(folder))
    if not chosen:
        out.print("nothing to submit: every task is done, queued or running", highlight=False)
        return 0
    submission = submit_slurm(folder, maker, chosen, profile)
    out.print(f"submitted {len(chosen)} task(s) as array {', '.join(submission.array_ids)} ({profile.name})",
              highlight=False)
    if args.wait:
        from orchestrator.executors.slurm import wait

        ended = wait(submission, poll_seconds=profile.poll_seconds)
        failed = sum(1 for end in ended.values() if end.state != "COMPLETED")
        out.print(f"the array left the queue ({failed} task(s) not COMPLETED)", highlight=False)
    return 0


def cmd_status(args) -> int:
    from collections import Counter

    from dft.queue import saved_maker, slurm_queue, states
    from dft.tasks import DftFolder

    from ..console import out, table
    from ..runs import Run

    run = Run(args.run)
    engines = [args.engine] if args.engine else sorted(p.name for p in (run.path / "dft").glob("*") if p.is_dir())
    if not engines:
        out.print(f"no DFT tasks in {run.path}; `gencsp dft submit {run.path} --engine gpaw|vasp ...`",
                  highlight=False)
    for engine in engines:
        folder = DftFolder(run.path, engine)
        maker = saved_maker(folder)
        counts = Counter(states(folder, maker, _queue_or_none(folder, slurm_queue)).values())
        out.print(table(f"dft {engine}: {run.path.name}", ["state", "tasks"], sorted(counts.items())))
    return 0


def _queue_or_none(folder, slurm_queue):
    """SLURM's view when SLURM answers here; None (unknown) on a machine without it."""
    from orchestrator.executors.slurm import missing

    return None if missing() else slurm_queue(folder)


def cmd_collect(args) -> int:
    from dft.assess import assess, build_reference
    from dft.queue import collect_records, engine_reference, saved_maker, slurm_queue, tables
    from dft.relax_run import samples as run_samples
    from dft.tasks import DftFolder

    from ..atomic import write_parquet
    from ..console import out, table
    from ..runs import Run

    run = Run(args.run)
    folder = DftFolder(run.path, args.engine)
    maker = saved_maker(folder)
    records = collect_records(folder, maker, _queue_or_none(folder, slurm_queue))
    samples, references = tables(records)
    write_parquet(folder.path / "results.parquet", samples)
    expected = sum(1 for _, spec in folder.tasks() if spec.role != "sample")
    choice = reference_choice(args)
    source = _reference_source(args, maker, expected)
    if source == "engine" and len(references) < expected:
        reference = None
        note = f"{expected - len(references)} reference task(s) not done: no energy above hull yet"
    elif source == "engine":
        reference, note = engine_reference(maker, references, expected), None
    else:
        from dataclasses import replace

        reference, note = build_reference(replace(choice, source=source), samples, None, None), None
    total = sum(1 for _, spec in folder.tasks() if spec.role == "sample")
    summary = assess(folder.path, run_samples(run.path), samples, reference, maker.name, maker.corrections,
                     extra={"dft_selected": total, "dft_collected": len(samples), "note": note},
                     metrics_table=run.path / "metrics" / "structures.parquet")
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in summary.items()
            if k in ("dft_selected", "dft_collected", "relaxed_ok", "relax_failed", "converged", "stable_rate",
                     "metastable_rate", "hull_errors")]
    out.print(table(f"dft {args.engine}: {run.path.name}", ["", "value"], rows))
    if reference is not None:
        out.print(f"hull reference: {reference.description}; corrections: {summary['scheme']}", highlight=False)
    if note:
        out.print(note, highlight=False)
    return 0


def _reference_source(args, maker, reference_tasks: int) -> str:
    """auto: the entries file if given; the engine's own reference tasks when its energies are not
    MP-compatible (GPAW); Materials Project when MP_API_KEY is set; else reference tasks if any."""
    import os

    if args.reference != "auto":
        return args.reference
    if args.reference_entries:
        return "file"
    if maker.corrections == "none":
        return "engine"
    if os.environ.get("MP_API_KEY"):
        return "mp"
    return "engine" if reference_tasks else "none"
