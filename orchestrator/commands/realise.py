"""gencsp realise RUN: give coordinates to the Wyckoff samples of a run."""

from __future__ import annotations

from pathlib import Path

# Options left unset keep RealisationSettings' defaults (imported lazily: `gencsp --help` stays instant).
OPTIONS = (("--trials", int, "PyXtal placements per sample (default 5)"), ("--seed", int, "default 0"),
           ("--volume-factor", float, "PyXtal volume factor (default 1.1)"),
           ("--relax-steps", int, "CHGNet steps (default 300)"), ("--fmax", float, "CHGNet force limit (default 0.1)"),
           ("--max-atoms", int, "primitive-cell atoms; larger descriptions are rejected unplaced (default: the model "
                                "card's limits.max_atoms, else 200)"),
           ("--seconds", float, "time limit per sample, trials included (default 60)"))


def register(sub) -> None:
    parser = sub.add_parser("realise", help="realise Wyckoff samples of a run (PyXtal, optional CHGNet relaxation)")
    parser.add_argument("run", type=Path, help="run folder")
    for flag, kind, text in OPTIONS:
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument("--relax", action="store_true", help="CHGNet-relax each placement, keep the lowest energy")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--conventional", action="store_true", help="keep PyXtal's conventional cell")
    parser.add_argument("--force", action="store_true", help="realise every Wyckoff row again")
    parser.set_defaults(func=cmd_realise)


def settings_from(args):
    from ..realise import RealisationSettings

    given = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
             for flag, _, _ in OPTIONS}
    given = {k: v for k, v in given.items() if v is not None}
    if args.device:
        given["device"] = args.device
    return RealisationSettings(relax=args.relax, primitive=not args.conventional, **given)


def cmd_realise(args) -> int:
    from ..console import out
    from ..realise import realise_run
    from ..runs import Run

    run = Run(args.run)
    realise_run(run, settings_from(args), force=args.force, progress=True)
    counts = run.info["realisation"]["counts"]
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts["reasons"].items())
    out.print(f"{counts['realised']} Wyckoff sample(s) realised, {counts['failed']} failed"
              f"{f' ({reasons})' if reasons else ''}; settings in run.json", highlight=False)
    return 0
