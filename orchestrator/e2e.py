"""`gencsp e2e MODEL` (`make e2e MODEL=...`): one upstream model end to end on CPU, at smoke scale.

Build the model's CPU image where it is missing (from the upstream mirror when one is given), train
it as its card's `e2e` recipe says (or write untrained weights: a pipeline check), bench each task of
the recipe with those weights, write the HTML report and print the leaderboard rows with what each
stage cost. Every stage is the ordinary command (`gencsp build`, `train`, `bench`, `report`), so a
rerun resumes: finished trainings and runs are not redone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from schemas import ModelCard
from schemas.model_card import E2E, E2EBench

from .atomic import write_json
from .errors import GencspError


@dataclass
class E2EResult:
    model: str
    variant: str | None
    stages: list[dict] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    report: str | None = None
    checkpoint: str | None = None

    def stage(self, name: str, seconds: float, **facts) -> None:
        self.stages.append({"stage": name, "seconds": round(seconds, 1), **facts})


def recipe(card: ModelCard):
    if card.e2e is None:
        raise GencspError(f"model {card.name} has no e2e recipe (an `e2e:` block in its model.yaml)")
    return card.e2e


def ensure_built(card: ModelCard, variant: str | None, runtime: str, result: E2EResult, mirror) -> None:
    if runtime != "docker":
        return
    from . import images, models

    tagged = models.variant_card(card, variant)
    existed = images.image_exists(images.client(), tagged.image_name)
    start = time.monotonic()
    try:
        # always built: Docker's cache makes an up-to-date image a matter of seconds, and an image built
        # before a change of its adapter or helper would run stale code
        entry = images.build(card.name, variant=variant, upstream_mirror=mirror)
    except images.ImageError as exc:
        if not existed:
            raise
        first = str(exc).splitlines()[0]
        result.stage("build", 0.0, note=f"{tagged.image_name} built earlier, not brought up to date: {first}")
        return
    result.stage("build", time.monotonic() - start, image=entry["image"], id=entry["id"],
                 upstream_sha256=entry["labels"].get("gencsp.upstream.sha256"),
                 note="brought up to date from the build cache" if existed else "built")


def train_stage(card: ModelCard, variant: str | None, runtime: str, result: E2EResult, train_dir: Path | None):
    from . import models
    from .runtimes import get_runtime
    from .train import TrainConfig, TrainError, train

    spec = recipe(card).train
    if spec is None:
        return None
    options = {**spec.options, **({"init_only": True} if spec.init_only else {})}
    config = TrainConfig(model=card.name, dataset=recipe(card).dataset, device="cpu", max_epochs=spec.epochs,
                         options=options, split=spec.split, limit=spec.limit, variant=variant)
    timeout = spec.timeout_minutes * 60 if spec.timeout_minutes else None
    start = time.monotonic()
    record = train(config, models.variant_card(card, variant), get_runtime(runtime), train_dir, timeout=timeout)
    if record["state"] != "done":
        from .runtimes.base import log_tail

        folder = Path(train_dir or "trains") / record["train_id"]
        raise TrainError(f"training {folder} failed; log tail:\n{log_tail(folder / 'log.txt')}")
    result.stage("train" if not spec.init_only else "init (untrained)", record.get("seconds", 0.0),
                 train_id=record["train_id"], resumed=time.monotonic() - start < 1.0,
                 rows=(record.get("data") or {}).get("train_rows"), epochs=spec.epochs)
    result.checkpoint = record["checkpoint"]["path"]
    return result.checkpoint


def bench_argv(card: ModelCard, spec: E2EBench, variant: str | None, runtime: str, checkpoint: str | None,
               run_dir: Path | None) -> list[str]:
    argv = ["bench", "--model", card.name, "--dataset", recipe(card).dataset, "--split", spec.split,
            "--task", str(spec.task), "--device", "cpu", "--runtime", runtime,
            "--samples-per-target", str(spec.samples_per_target)]
    argv += ["--variant", variant] if variant else []
    argv += ["--checkpoint", checkpoint] if checkpoint else []
    argv += ["--limit", str(spec.limit)] if spec.limit else []
    argv += ["--num-samples", str(spec.num_samples)] if spec.num_samples else []
    argv += ["--batch-size", str(spec.batch_size)] if spec.batch_size else []
    argv += ["--run-dir", str(run_dir)] if run_dir else []
    argv += [] if spec.chgnet else ["--no-chgnet"]
    for key, value in spec.options.items():
        import json

        argv += ["--option", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return argv


def run_path_of(argv: list[str]) -> Path:
    from . import paths
    from .cli import build_parser
    from .commands.bench import config_from

    args = build_parser().parse_args(argv)
    return Path(args.run_dir or paths.runs_dir()) / config_from(args).run_id()


def bench_stage(card: ModelCard, variant: str | None, runtime: str, checkpoint: str | None,
                result: E2EResult, run_dir: Path | None) -> None:
    from .cli import main

    for spec in recipe(card).bench:
        argv = bench_argv(card, spec, variant, runtime, checkpoint, run_dir)
        start = time.monotonic()
        code = main(argv)
        seconds = time.monotonic() - start
        if code != 0:
            raise GencspError(f"gencsp {' '.join(argv)} exited with status {code}")
        path = run_path_of(argv)
        result.runs.append(str(path))
        result.stage(f"bench {spec.task}", seconds, run=path.name, **sample_cost(path))


def sample_cost(path: Path) -> dict:
    """Sampling seconds per requested sample, from the run's shards (what the model itself took)."""
    from .runs import Run

    run = Run(path)
    seconds = sum(s.state().get("seconds", 0.0) or 0.0 for s in run.shards())
    requested = run.info.get("samples_requested") or 0
    return {"samples": requested, "shard_seconds": round(seconds, 1),
            "seconds_per_sample": round(seconds / requested, 2) if requested else None}


def run_e2e(model: str, variant: str | None = None, runtime: str = "auto", mirror=None,
            run_dir: Path | None = None, train_dir: Path | None = None, report: Path | None = None,
            plan: E2E | None = None) -> E2EResult:
    """`plan` replaces the card's e2e recipe (CI runs a smaller one than `make e2e`)."""
    from . import models, paths
    from .runtimes import get_runtime

    card = models.get(model)
    if plan is not None:
        card = card.model_copy(update={"e2e": plan})
    recipe(card)
    variant = variant or card.variant_for("cpu")
    runtime = get_runtime(runtime).name
    result = E2EResult(model, variant)
    ensure_built(card, variant, runtime, result, mirror)
    checkpoint = train_stage(card, variant, runtime, result, train_dir)
    bench_stage(card, variant, runtime, checkpoint, result, run_dir)
    from .report import build_report

    out = Path(report or Path(run_dir or paths.runs_dir()) / f"e2e-{model}" / "report.html")
    start = time.monotonic()
    build_report(result.runs, out)
    result.stage("report", time.monotonic() - start, path=str(out))
    result.report = str(out)
    write_json(out.with_name("e2e.json"), {"model": model, "variant": variant, "runtime": runtime,
                                            "stages": result.stages, "runs": result.runs,
                                            "checkpoint": result.checkpoint})
    return result
