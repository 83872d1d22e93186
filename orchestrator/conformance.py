"""`gencsp check-image`: run a model's image on a small request and check the contract.

The request is planned exactly as a benchmark plans one (first targets of the
`mini` test split, the model's oracle information, its default options), run
twice with the same seed, and validated.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from schemas import ModelCard, Task

from . import models
from .errors import GencspError
from .executors.local import ShardPolicy
from .runs import RunConfig, Shard
from .runtimes.base import RunResult, Runtime, run_shard
from .validate import Limits, ManifestError, Report, validate_shard

LAYOUT_REASONS = {"path_outside", "symlink_escape", "missing_file", "not_a_file"}
ANSWER_REASONS = {"missing_record", "duplicate_record", "not_requested"}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def small_config(card: ModelCard, dataset: str = "mini", targets: int = 2, samples: int = 2,
                 checkpoint: Path | None = None) -> RunConfig:
    task = Task.csp if Task.csp in card.tasks else Task.generate
    options = {"source_split": "test"} if card.reads_dataset else {}  # replaying the split itself
    return RunConfig(model=card.name, dataset=dataset, split="test", task=task, limit=targets,
                     samples_per_target=samples, num_samples=targets * samples, shard_size=1000, options=options,
                     checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None)


def needs_checkpoint(card: ModelCard, checkpoint: Path | None) -> None:
    """A model that publishes no weights is checked with weights trained here (or untrained ones)."""
    if checkpoint is None and card.trainable and not (card.checkpoint and card.checkpoint.public):
        raise GencspError(f"model {card.name} publishes no weights: train some (`gencsp train --model {card.name} "
                          f"...`) and pass --checkpoint trains/<id>/out/model")


def _attempt(root: Path, card: ModelCard, runtime: Runtime, config: RunConfig, timeout: float):
    from .plan import plan

    run, _ = plan(config, card, root)
    shard: Shard = run.shards()[0]
    shard.reset_output()
    checkpoint = Path(config.checkpoint) if config.checkpoint else None
    result = run_shard(runtime, shard, card, timeout=timeout, checkpoint=checkpoint)
    try:
        report = validate_shard(shard.out_dir, shard.request(), Limits())
    except ManifestError as exc:
        return result, None, str(exc), shard
    return result, report, None, shard


def fingerprint(report: Report) -> str:
    """Hash of what the model produced, independent of timing."""
    digest = hashlib.sha256()
    for row in sorted(report.rows, key=lambda r: (r["target_id"], r["sample_index"])):
        digest.update(f"{row['target_id']}|{row['sample_index']}|{row['status']}|{row['cif']}|{row['wyckoff']}".encode())
    return digest.hexdigest()


def run_checks(card: ModelCard, runtime: Runtime, timeout: float | None = None, work: Path | None = None,
               checkpoint: Path | None = None) -> list[Check]:
    needs_checkpoint(card, checkpoint)
    config = small_config(card, checkpoint=checkpoint)
    timeout = timeout or ShardPolicy().timeout_for_samples(card, config.limit * config.samples_per_target)
    with tempfile.TemporaryDirectory(prefix="gencsp-check-", dir=work) as tmp:
        first = _attempt(Path(tmp) / "a", card, runtime, config, timeout)
        second = _attempt(Path(tmp) / "b", card, runtime, config, timeout)
        return evaluate(first, second, runtime, card)


def _ran(result: RunResult) -> Check:
    if result.runtime_failure:
        return Check("runs", False, result.runtime_failure)
    return Check("runs", result.exit_code == 0, f"exit code {result.exit_code} in {result.seconds:.1f} s")


def evaluate(first, second, runtime: Runtime, card: ModelCard) -> list[Check]:
    result, report, error, shard = first
    checks = [_ran(result)]
    if report is None:
        checks.append(Check("manifest schema", False, error or "no manifest"))
        return checks
    checks.append(Check("manifest schema", True, f"contract {report.manifest.contract_version}, complete"
                        if report.manifest.complete else "valid but marked incomplete"))
    reasons = [r["reason"] for r in report.rows if r["reason"]]
    layout = [r for r in reasons if r in LAYOUT_REASONS]
    checks.append(Check("file layout", not layout and not report.warnings,
                        "; ".join(layout + report.warnings) or "every file named, inside out/"))
    answered = [r for r in reasons if r in ANSWER_REASONS]
    unexplained = [r for r in report.rows if r["model_status"] == "failed" and not r["message"]]
    failed = sum(1 for r in report.rows if r["model_status"] == "failed")
    checks.append(Check("failed samples recorded", not answered and not unexplained,
                        f"{len(report.rows)} samples answered, {failed} failed with a message"
                        if not answered else f"problems: {sorted(set(answered))}"))
    accepted = sum(1 for r in report.rows if r["status"] == "accepted")
    checks.append(Check("structures accepted", accepted > 0, f"{accepted} of {len(report.rows)} accepted"))
    checks.append(network_check(runtime, card))
    other = second[1]
    same = other is not None and fingerprint(other) == fingerprint(report)
    checks.append(Check("same seed, same output", same, "identical outputs on a second run" if same
                        else "outputs differ between two runs with the same seed"))
    timings = all(r.seconds >= 0 for r in report.manifest.samples) and report.manifest.runtime.end is not None
    runtime_info = report.manifest.runtime
    span = (runtime_info.end - runtime_info.start).total_seconds() if runtime_info.end else float("nan")
    checks.append(Check("timing fields", timings, f"start and end recorded ({span:.1f} s), seconds on every record"))
    return checks


def network_check(runtime: Runtime, card: ModelCard) -> Check:
    """The model ran without a network: a container started with its options sees only loopback."""
    if runtime.name in ("docker", "apptainer"):
        try:
            interfaces = runtime.interfaces(card)
        except Exception as exc:  # noqa: BLE001 - any failure to start the probe fails the check, with why
            return Check("no network", False, f"could not list the container's interfaces: {exc}")
        return Check("no network", interfaces == ["lo"], f"interfaces inside the container: {', '.join(interfaces)}")
    return Check("no network", True, "local runtime: not isolated (use docker or apptainer to prove it)")


def check_image(model: str, runtime: Runtime, timeout: float | None = None, checkpoint: Path | None = None,
                variant: str | None = None) -> list[Check]:
    """The contract runs; with apptainer, also what the SIF itself shows (image_checks). `variant`
    defaults to the CPU build where the card has variants."""
    base = models.get(model)
    card = base.with_variant(variant or base.variant_for("cpu"))
    checks = run_checks(card, runtime, timeout, checkpoint=checkpoint)
    if runtime.name == "apptainer":
        from .image_checks import sif_checks

        checks += sif_checks(runtime, card)
    return checks
