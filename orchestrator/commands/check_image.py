"""gencsp check-image MODEL: contract conformance of a model's image."""

from __future__ import annotations

from pathlib import Path

from .values import positive_seconds


def register(sub) -> None:
    parser = sub.add_parser("check-image", help="run a model image on a small request and check the contract")
    parser.add_argument("model")
    parser.add_argument("--runtime", default="auto", choices=("auto", "docker", "apptainer", "local"))
    parser.add_argument("--timeout", type=positive_seconds, help="seconds per run (default: from the model card)")
    parser.add_argument("--checkpoint", type=Path, help="weights to check with (models that publish none: the "
                                                        "out/model folder of a `gencsp train`)")
    parser.add_argument("--variant", help="image variant (default: the CPU build where the card has variants)")
    parser.set_defaults(func=cmd_check_image)


def cmd_check_image(args) -> int:
    from .. import conformance
    from ..console import out, table
    from ..runtimes import get_runtime

    runtime = get_runtime(args.runtime)
    with out.status(f"checking {args.model} with {runtime.name} (two runs)"):
        checks = conformance.check_image(args.model, runtime, args.timeout, args.checkpoint, args.variant)
    rows = [[c.name, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.detail] for c in checks]
    out.print(table(f"check-image {args.model} ({runtime.name})", ["check", "result", "detail"], rows))
    return 0 if all(c.passed for c in checks) else 1
