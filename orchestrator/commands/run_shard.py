"""gencsp run-shard RUN INDEX: process one shard (what a SLURM array task runs)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("run-shard", help="run, validate and record one shard of a run")
    parser.add_argument("run", type=Path)
    parser.add_argument("index", type=int)
    parser.add_argument("--runtime", default="auto", choices=("auto", "docker", "apptainer", "local"))
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--force", action="store_true", help="redo the shard even if it is done")
    parser.set_defaults(func=cmd_run_shard)


def cmd_run_shard(args) -> int:
    from .. import models
    from ..console import out
    from ..errors import GencspError
    from ..executors.local import ShardPolicy, process_shard
    from ..runs import Run, Shard, State
    from ..runtimes import get_runtime

    run = Run(args.run)
    shard = Shard(run.path / "shards" / f"{args.index:04d}")
    if not shard.request_path.exists():
        raise GencspError(f"{shard.path}: no such shard in {run.path}")
    if shard.status == State.done and not args.force:
        out.print(f"shard {args.index} is done; nothing to do")
        return 0
    card = models.for_run(run.info)
    checkpoint = Path(run.config.checkpoint) if run.config.checkpoint else None
    policy = ShardPolicy(timeout=args.timeout, gpu=args.gpu, checkpoint=checkpoint)
    state = process_shard(shard, get_runtime(args.runtime), card, policy)
    out.print(f"shard {args.index}: {state['status']} {state.get('counts') or state.get('error')}", highlight=False)
    return 0 if state["status"] == State.done else 3
