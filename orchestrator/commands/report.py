"""gencsp report RUN... --out report.html: one self-contained HTML page, figures also as PNG and SVG."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser(
        "report", help="a self-contained HTML report of runs (figures also written as PNG and SVG)",
        description="Compares runs with each other and with their reference split: validity, coverage or "
                    "match rate, distributions of density, elements, space groups and crystal systems, "
                    "energy above hull (when `gencsp relax` ran), time per sample, failed samples and a "
                    "gallery of matched CSP structures. Runs without metrics are evaluated first "
                    "(gencsp profile) unless --no-evaluate.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories")
    parser.add_argument("--out", type=Path,
                        help="HTML file (default: RUN/report.html for one run, ./report.html for several); "
                             "figures go to <name>_files/ beside it")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="do not evaluate runs without metrics (their metric sections stay empty)")
    parser.add_argument("--gallery", type=int, default=6, help="matched CSP targets pictured per run")
    parser.add_argument("--title", default="gencsp report", help="title of the page")
    parser.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from ..console import out
    from ..report import ReportSettings, build_report

    settings = ReportSettings(title=args.title, gallery=args.gallery, evaluate=not args.no_evaluate)
    html = args.out or (args.runs[0] / "report.html" if len(args.runs) == 1 else Path("report.html"))
    result = build_report(args.runs, html, settings)
    out.print(f"wrote {result.html} ({result.html.stat().st_size / 1e6:.2f} MB) and {len(result.files)} figure "
              f"files in {result.files_dir}", highlight=False)
    return 0
