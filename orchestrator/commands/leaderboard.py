"""gencsp leaderboard [RUN...|--runs-dir DIR] [--format table|csv|markdown|latex] [--task csp|generate]"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser(
        "leaderboard", help="one row per run: the main metrics of its task, cost and failures",
        description="Reads RUN/metrics/summary.json of each run (gencsp evaluate). Without RUN, every run "
                    "folder under --runs-dir (default: $GENCSP_RUNS or ./runs).")
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN", help="run directories")
    parser.add_argument("--runs-dir", type=Path, help="a folder of run directories")
    parser.add_argument("--format", default="table", choices=("table", "csv", "markdown", "latex"),
                        help="table (terminal), csv (raw fractions and seconds), markdown or latex (papers)")
    parser.add_argument("--task", choices=("csp", "generate"), help="only runs of this task")
    parser.add_argument("--out", type=Path, help="write csv/markdown/latex to this file instead of stdout")
    parser.set_defaults(func=cmd_leaderboard)


def run_paths(args) -> list[Path]:
    from ..errors import GencspError
    from ..leaderboard import find_runs
    from ..paths import runs_dir

    if args.runs and args.runs_dir:
        raise GencspError("give run directories or --runs-dir, not both")
    return list(args.runs) or find_runs(args.runs_dir or runs_dir())


def cmd_leaderboard(args) -> int:
    from ..atomic import write_text
    from ..console import err, out
    from ..errors import GencspError
    from ..leaderboard import load_entries, render

    entries = load_entries(run_paths(args), args.task)
    if not entries:
        raise GencspError("no runs" + (f" of task {args.task}" if args.task else "") + " to list")
    text = render(entries, args.format)
    if text is None:
        if args.out:
            err.print("--out is ignored with --format table", highlight=False)
        return 0
    if args.out:
        write_text(args.out, text)
        out.print(f"wrote {args.out}", highlight=False)
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
