"""gencsp validate SHARD_OUT_DIR"""

from __future__ import annotations

from pathlib import Path

from .values import positive_int, positive_seconds


def register(sub) -> None:
    parser = sub.add_parser("validate", help="check a model's manifest and files")
    parser.add_argument("out_dir", type=Path, help="the folder the model wrote (holding manifest.json)")
    parser.add_argument("--request", type=Path, help="request.json to check answers against (default: ../request.json)")
    parser.add_argument("--table", type=Path, help="where to write the rows (default: beside OUT_DIR)")
    parser.add_argument("--max-atoms", type=positive_int, default=1000)
    parser.add_argument("--parse-seconds", type=positive_seconds, default=10.0)
    parser.set_defaults(func=cmd_validate)


def read_request(path: Path):
    from pydantic import ValidationError

    from schemas import SampleRequest
    from schemas.errors import format_errors

    from ..errors import GencspError

    try:
        return SampleRequest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise GencspError(f"{path}: not a sample request:\n{format_errors(exc)}") from exc


def cmd_validate(args) -> int:
    from ..atomic import write_parquet
    from ..console import err, out, table
    from ..validate import Limits, printable, validate_shard

    request_path = args.request or args.out_dir.parent / "request.json"
    request = read_request(request_path) if request_path.is_file() else None
    report = validate_shard(args.out_dir, request, Limits(args.parse_seconds, args.max_atoms))
    destination = args.table or args.out_dir.parent / "structures.parquet"
    write_parquet(destination, report.frame())
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    rows = sorted(report.counts().items(), key=lambda kv: (kv[0] != "accepted", kv[0]))
    out.print(table(printable(f"{args.out_dir} ({report.manifest.model.name})"), ["samples", "count"], rows))
    out.print(f"wrote {len(report.rows)} rows to {destination}", highlight=False)
    return 0
