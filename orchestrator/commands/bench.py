"""gencsp bench: plan shards, run them, validate, collect (and evaluate)."""

from __future__ import annotations

import json
from pathlib import Path


def parse_options(pairs: list[str]) -> dict:
    """`key=value` pairs; values are JSON when they parse as JSON, else strings."""
    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            from ..errors import GencspError

            raise GencspError(f"--option expects key=value, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def add_run_arguments(parser) -> None:
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="mini")
    parser.add_argument("--split", default="test")
    parser.add_argument("--task", choices=("csp", "generate"), default="csp")
    parser.add_argument("--samples-per-target", type=int, default=1, help="CSP samples per target (k of @k)")
    parser.add_argument("--num-samples", type=int, help="generate: total samples (default: rows of the split)")
    parser.add_argument("--limit", type=int, help="use the first N rows of the split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=100, help="samples per shard")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    parser.add_argument("--checkpoint", help="host path of the weights (file or folder), mounted read-only")
    parser.add_argument("--variant", help="image variant (cpu, cuda; default: the one built for --device)")
    parser.add_argument("--run-dir", type=Path, help="runs folder (default: ./runs or $GENCSP_RUNS)")


def register(sub) -> None:
    parser = sub.add_parser("bench", help="run a model on a dataset split end to end")
    add_run_arguments(parser)
    parser.add_argument("--runtime", default="auto", choices=("auto", "docker", "apptainer", "local"))
    parser.add_argument("--executor", default="local", choices=("local", "slurm"))
    parser.add_argument("--profile", help="slurm: cluster profile (see `gencsp clusters`)")
    parser.add_argument("--detach", action="store_true", help="slurm: return once the job array is submitted")
    parser.add_argument("--workers", type=int, default=1, help="local: shards run at once")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--timeout", type=float, help="seconds per shard (default: from the model card)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="slurm: override a cluster profile value for this run (repeatable)")
    parser.add_argument("--metrics-profile", default="gencsp", choices=("gencsp", "cdvae", "diffcsp"),
                        help="metric definitions (default gencsp: reference and corrected numbers side by side)")
    parser.add_argument("--eval-workers", type=int, help="processes for the metrics (default: all cores)")
    parser.add_argument("--no-evaluate", action="store_true", help="stop after validation and collection")
    parser.add_argument("--no-chgnet", action="store_true",
                        help="skip the CHGNet-feature Frechet distance (its first use featurizes the whole reference)")
    parser.add_argument("--build-missing", action="store_true",
                        help="docker: build the model's image first if it is not built (never pulled)")
    parser.set_defaults(func=cmd_bench)


def config_from(args):
    from schemas import Task

    from ..runs import RunConfig

    return RunConfig(model=args.model, dataset=args.dataset, split=args.split, task=Task(args.task),
                     seed=args.seed, samples_per_target=args.samples_per_target, num_samples=args.num_samples,
                     limit=args.limit, shard_size=args.shard_size, device=args.device,
                     batch_size=args.batch_size, options=parse_options(args.option),
                     checkpoint=str(Path(args.checkpoint).resolve()) if args.checkpoint else None)


def cmd_bench(args) -> int:
    from .. import models, paths
    from ..collect import collect
    from ..console import out
    from ..executors import ExecutorOptions, get_executor
    from ..executors.local import ShardPolicy
    from ..plan import plan
    from ..runtimes import get_runtime
    from ..summary import print_summary

    base = models.get(args.model)
    variant = args.variant or base.variant_for(args.device)
    card = models.variant_card(base, variant)
    config = config_from(args)
    run, resumed = plan(config, card, args.run_dir or paths.runs_dir())
    out.print(f"{'resuming' if resumed else 'created'} run {run.path}", highlight=False)
    runtime = get_runtime(args.runtime)
    if runtime.name == "docker" and args.build_missing:
        ensure_image(card, variant)
    run.update_info(runtime=runtime.identity(card), executor=args.executor, variant=variant)
    policy = ShardPolicy(retries=args.retries, timeout=args.timeout, gpu=args.device == "cuda",
                         checkpoint=Path(config.checkpoint) if config.checkpoint else None)
    options = ExecutorOptions(workers=args.workers, profile=args.profile, detach=args.detach,
                              extra={"profile_overrides": profile_overrides(args.set)})
    get_executor(args.executor).execute(run, card, runtime.name, policy, options)
    if args.detach:
        out.print(f"submitted; follow with `gencsp status {run.path}`", highlight=False)
        return 0
    frame = collect(run)
    print_summary(run, frame)
    evaluate_stage(run, card, args)
    return 0


def profile_overrides(pairs: list[str] | None) -> dict:
    if not pairs:
        return {}
    from ..clusters import parse_overrides

    return parse_overrides(pairs)


def evaluate_stage(run, card, args) -> dict | None:
    """Realise symmetry-only samples (one shared, recorded stage), then compute the metrics."""
    if card.output == "wyckoff":
        from ..realise import RealisationSettings, realise_run

        realise_run(run, RealisationSettings(seed=run.config.seed), progress=True)
    if args.no_evaluate:
        return None
    from ..leaderboard import print_run_row
    from ..metrics import evaluate_run

    metrics = evaluate_run(run.path, profile=args.metrics_profile, workers=args.eval_workers, seed=run.config.seed,
                           chgnet=not args.no_chgnet)
    print_run_row(run.path)
    return metrics


def ensure_image(card, variant: str | None = None) -> None:
    """Build a model's image when it is missing (a local build, never a pull of the model image)."""
    from .. import images
    from ..console import out

    if images.image_exists(images.client(), card.image_name):
        return
    flag = f" --variant {variant}" if variant else ""
    out.print(f"{card.image_name} is not built here: building it (gencsp build {card.name}{flag})", highlight=False)
    with out.status(f"building {card.image_name}"):
        images.build(card.name, variant=variant)
