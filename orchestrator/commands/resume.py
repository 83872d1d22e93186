"""gencsp resume RUN: run again only the shards that are not done, then collect the run."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("resume", help="resubmit the unfinished shards of a run, wait, collect")
    parser.add_argument("run", type=Path)
    parser.add_argument("--profile", help="slurm: another cluster profile than the one recorded in the run")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="slurm: override a profile value for this run (repeatable), e.g. time=04:00:00")
    parser.add_argument("--runtime", choices=("auto", "docker", "apptainer", "local"),
                        help="runtime of the shards (default: the one recorded)")
    parser.add_argument("--retries", type=int, help="resubmissions of a shard that keeps failing")
    parser.add_argument("--skip-failed", action="store_true", help="leave failed shards as they are")
    parser.add_argument("--detach", action="store_true", help="slurm: return once submitted")
    parser.add_argument("--workers", type=int, default=1, help="local: shards run at once")
    parser.set_defaults(func=cmd_resume)


def resume_slurm(run, card, args) -> None:
    from .. import clusters
    from ..executors import slurm
    from ..runs import RunError

    recorded = run.info.get("slurm")
    if recorded is None and not args.profile:
        raise RunError(f"{run.path}: was never submitted to SLURM; pass --profile NAME")
    overrides = clusters.parse_overrides(args.overrides)
    if args.profile:
        profile = clusters.get(args.profile, overrides)
    else:
        profile = clusters.from_dict({**recorded["profile"], **overrides})
    base = recorded or {}
    plan = slurm.make_plan(run, profile, args.runtime or base.get("runtime") or "auto",
                           args.retries if args.retries is not None else base.get("retries", 2),
                           base.get("timeout"), base.get("gpu", False))
    slurm.start(run, card, plan, detach=args.detach, include_failed=not args.skip_failed)


def resume_local(run, card, args) -> None:
    from ..executors.local import ShardPolicy, run_shards
    from ..runtimes import get_runtime

    runtime = args.runtime or (run.info.get("runtime") or {}).get("runtime") or "auto"
    config = run.config
    policy = ShardPolicy(retries=args.retries if args.retries is not None else 2,
                         checkpoint=Path(config.checkpoint) if config.checkpoint else None,
                         gpu=config.device == "cuda")
    run_shards(run, get_runtime(runtime), card, policy, workers=args.workers)


def cmd_resume(args) -> int:
    from .. import models
    from ..collect import collect
    from ..console import out
    from ..runs import Run, State
    from ..summary import print_summary

    run = Run(args.run)
    card = models.for_run(run.info)
    unfinished = [s.index for s in run.shards() if s.status != State.done]
    out.print(f"run {run.path}: {len(unfinished)} shard(s) not done", highlight=False)
    if args.profile or run.info.get("executor") == "slurm":
        resume_slurm(run, card, args)
        if args.detach:
            out.print(f"submitted; follow with `gencsp status {run.path}`", highlight=False)
            return 0
    elif unfinished:
        resume_local(run, card, args)
    print_summary(run, collect(run))
    failed = [s.index for s in run.shards() if s.status == State.failed]
    if failed:  # they count against the model, as rejected samples
        out.print(f"{len(failed)} shard(s) failed: {', '.join(map(str, failed))} (`gencsp status {run.path}`)",
                  highlight=False)
    return 0
