"""gencsp evaluate [RUN] | --predictions P --reference REF --task T --kind K [--profile P] --out metrics.json"""

from __future__ import annotations

from pathlib import Path

from .values import non_negative_int, positive_int

ARROWS = {"higher": "↑", "lower": "↓", "none": ""}
# METRe, polymorph-aware and de-duplicated scoring, the stability ensemble: defined below the table
DEFINED = ("metre", "dedup.", "polymorph_", "match_or_polymorph", "ensemble.")


def register(sub) -> None:
    parser = sub.add_parser(
        "evaluate", help="compute the metrics of predictions (CSV, folder of CIFs, or run directory)",
        description="Profiles: cdvae and diffcsp reproduce the reference scripts (their JSON keys); gencsp "
                    "(default) reports those numbers (prefixed cdvae./diffcsp.) beside the corrected metrics.")
    parser.add_argument("run", nargs="?", type=Path, help="a run directory (same as --predictions RUN)")
    parser.add_argument("--predictions", type=Path,
                        help="CSV with a cif column (CSP: also target_id, sample_index), a folder of CIFs "
                             "(CSP: <target_id>.<sample_index>.cif), or a run directory")
    parser.add_argument("--task", choices=("generate", "csp"), help="(from the run for a run directory)")
    parser.add_argument("--reference", help="CSV with material_id and cif, or a dataset NAME/SPLIT (perov_5/test)")
    parser.add_argument("--train", help="training structures for novelty (CSV or NAME/SPLIT)")
    parser.add_argument("--kind", choices=("perovskite", "carbon", "mp20"),
                        help="coverage cut-offs (default: the reference dataset's kind)")
    parser.add_argument("--profile", choices=("cdvae", "diffcsp", "gencsp"), default="gencsp")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the 1000-crystal distribution subset")
    parser.add_argument("--workers", type=positive_int, help="processes (default: every core)")
    parser.add_argument("--out", type=Path, help="summary JSON (default: RUN/metrics/summary.json, or metrics.json)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the fingerprint cache")
    parser.add_argument("--no-chgnet", action="store_true", help="skip the Fréchet distance on CHGNet features")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=cmd_evaluate)


def outputs(args, is_run: bool, predictions: Path) -> tuple[Path, Path, Path]:
    """(summary, provenance, per-structure table) paths."""
    if args.out is None and is_run:
        folder = predictions / "metrics"
        return folder / "summary.json", folder / "provenance.json", folder / "structures.parquet"
    out = args.out or Path("metrics.json")
    stem = out.with_suffix("")
    return out, stem.with_name(stem.name + ".provenance.json"), stem.with_name(stem.name + ".structures.parquet")


def show(result, profile: str) -> None:
    from ..console import err, out, table

    prov = result.provenance
    rows = [[key, "null" if value is None else (f"{value:.6g}" if isinstance(value, float) else value),
             ARROWS[prov["metrics"][key]["direction"]]] for key, value in result.metrics.items()]
    title = f"{profile} profile, {prov['task']} ({prov['kind']})"
    out.print(table(title, ["metric", "value", ""], rows))
    counts, timing = prov["counts"], prov["timing"]
    targets = (f"{counts['targets_predicted']} of the {counts['targets_in_reference']} reference targets "
               "predicted (the reference numbers are over these); " if "targets_predicted" in counts else "")
    out.print(f"{counts['requested']} requested samples, {counts['valid']} valid; {targets}"
              f"{counts['reference']} reference crystals; seed {prov['seed']}; "
              f"{timing['wall_seconds']:.1f} s wall, {timing['compute_seconds_summed_over_processes']:.1f} s "
              f"compute summed over processes ({timing['records_from_cache']} records from the cache)",
              highlight=False)
    defined = [(key, prov["metrics"][key]["description"]) for key in result.metrics if key.startswith(DEFINED)]
    if defined:
        out.print("Definitions (corrected metrics beside the reference scripts' numbers, which they never replace):",
                  highlight=False)
        for key, text in defined:
            out.print(f"  [bold]{key}[/]: {text}", highlight=False)
    for note in prov["notes"]:
        err.print(f"[yellow]note:[/] {note}", highlight=False)


def cmd_evaluate(args) -> int:
    from ..console import out
    from ..errors import GencspError
    from ..metrics.context import Settings
    from ..metrics.evaluate import evaluate, write
    from ..metrics.inputs import from_files
    from ..runs import RUN_JSON

    predictions = args.predictions or args.run
    if predictions is None:
        raise GencspError("give a run directory or --predictions")
    if args.run and args.predictions:
        raise GencspError("give either a run directory or --predictions, not both")
    is_run = predictions.is_dir() and (predictions / RUN_JSON).is_file()
    if is_run and (args.reference or args.kind or args.task):
        raise GencspError("a run directory brings its task, reference and kind: drop --task/--reference/--kind")
    inputs = from_files(predictions, args.task, args.reference, args.kind, args.train)
    settings = Settings(seed=args.seed, workers=args.workers, progress=not args.quiet, cache=not args.no_cache,
                        chgnet=not args.no_chgnet)
    result = evaluate(inputs, args.profile, settings)
    paths = outputs(args, is_run, predictions)
    write(result, *paths)
    show(result, args.profile)
    if is_run:
        from ..leaderboard import load_entry

        note = load_entry(predictions).weights_note()
        if note:  # untrained or smoke-trained weights: said wherever the numbers appear
            out.print(f"[yellow]{note}[/]", highlight=False)
    out.print(f"wrote {paths[0]}, {paths[1].name}, {paths[2].name}", highlight=False)
    return 0
