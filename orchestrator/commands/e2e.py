"""gencsp e2e MODEL: build (CPU), train at smoke scale, bench, report: one upstream model end to end."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("e2e", help="one model end to end on CPU at smoke scale: build, train, bench, report")
    parser.add_argument("model")
    parser.add_argument("--variant", help="image variant (default: the CPU one)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "docker", "apptainer", "local"))
    parser.add_argument("--upstream", metavar="DIR", help="mirror of upstream archives (default: "
                                                          "$GENCSP_UPSTREAM_MIRROR, else GitHub)")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--train-dir", type=Path)
    parser.add_argument("--report", type=Path, help="HTML report (default: <runs>/e2e-MODEL/report.html)")
    parser.set_defaults(func=cmd_e2e)


def cmd_e2e(args) -> int:
    from ..console import out, table
    from ..e2e import run_e2e
    from ..leaderboard import load_entries, print_tables

    result = run_e2e(args.model, args.variant, args.runtime, args.upstream, args.run_dir, args.train_dir,
                     args.report)
    print_tables(load_entries(result.runs))
    rows = [[s["stage"], f"{s['seconds']:.0f}",
             "; ".join(f"{k}={v}" for k, v in s.items() if k not in ("stage", "seconds") and v is not None)]
            for s in result.stages]
    out.print(table(f"e2e {args.model} ({result.variant or 'default'} image): what each stage cost",
                    ["stage", "seconds", "facts"], rows))
    out.print(f"report: {result.report}", highlight=False)
    return 0
