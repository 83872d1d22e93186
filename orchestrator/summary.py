"""A short account of a run's samples: requested, accepted, rejected and why, time."""

from __future__ import annotations

from .runs import Run


def sample_summary(frame) -> dict:
    accepted = frame["status"] == "accepted"
    reasons = frame.loc[~accepted, "reason"].value_counts().to_dict()
    seconds = frame["seconds"].fillna(0)
    return {
        "requested": len(frame),
        "accepted": int(accepted.sum()),
        "rejected": int((~accepted).sum()),
        "rejected_by_reason": {str(k): int(v) for k, v in reasons.items()},
        "model_seconds": float(seconds.sum()),
        "model_seconds_per_sample": float(seconds.sum() / max(len(frame), 1)),
    }


def print_summary(run: Run, frame) -> dict:
    from .console import out, table

    summary = sample_summary(frame)
    rows = [["requested", summary["requested"]], ["accepted", summary["accepted"]],
            ["rejected", summary["rejected"]]]
    rows += [[f"  {reason}", n] for reason, n in summary["rejected_by_reason"].items()]
    rows.append(["model seconds per sample", f"{summary['model_seconds_per_sample']:.3f}"])
    out.print(table(run.info["run_id"], ["samples", "value"], rows))
    from .origin import sentence

    note = sentence(run.info.get("weights"), (run.config.dataset, run.config.split))
    if note:  # untrained or smoke-trained weights: said wherever the numbers appear
        out.print(f"[yellow]{note}[/]", highlight=False)
    return summary

