"""gencsp status RUN: pending, running, done and failed shards, with their SLURM tasks."""

from __future__ import annotations

import json
from pathlib import Path

STATUSES = ("pending", "running", "done", "failed")


def register(sub) -> None:
    parser = sub.add_parser("status", help="shards of a run: pending, running, done, failed (with SLURM ids)")
    parser.add_argument("run", type=Path)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--no-queue", action="store_true", help="do not ask SLURM (squeue/scontrol)")
    parser.set_defaults(func=cmd_status)


def describe(state: dict, task: dict | None, queued=None) -> tuple[str, str]:
    """(status, SLURM detail) of one shard from its state, its last SLURM task and the queue."""
    status = str(state["status"])
    if queued is not None and status != "done":
        detail = queued.state + (f" ({queued.reason})" if queued.reason not in ("", "None") else "")
        return ("running" if queued.running else "pending"), detail
    ended = (task or {}).get("ended")
    detail = ended["state"] if ended else ""
    if status == "running":  # no task runs it any more: killed, waiting for a resubmission or a resume
        return "pending", detail or "interrupted"
    return status, detail


def shard_rows(run, query: bool = True) -> list[dict]:
    from ..executors.slurm import last_task
    from ..executors.slurm_array import final_states, missing, queue_states

    shards = run.shards()
    tasks = {s.index: last_task(s) for s in shards}
    open_tasks = [t["task_id"] for t in tasks.values() if t and "ended" not in t]
    cluster = (run.info.get("slurm") or {}).get("profile", {}).get("cluster")
    queue, ended = {}, {}
    if query and open_tasks and missing() is None:
        queue = queue_states(open_tasks, cluster)
        ended = final_states([t for t in open_tasks if t not in queue], cluster)
    rows = []
    for shard in shards:
        state, task = shard.state(), tasks[shard.index]
        task_id = task["task_id"] if task else None
        if task and task_id in ended:
            task = {**task, "ended": {"state": ended[task_id].state}}
        status, detail = describe(state, task, queue.get(task_id))
        counts = state.get("counts") or {}
        accepted = counts.get("accepted", 0)
        rows.append({"shard": shard.index, "samples": len(shard.request().requested()), "status": status,
                     "slurm_task": task_id, "slurm": detail, "attempts": state.get("attempts", 0),
                     "accepted": accepted, "rejected": sum(counts.values()) - accepted,
                     "seconds": state.get("seconds"), "error": state.get("error") or state.get("interrupted")})
    return rows


def cmd_status(args) -> int:
    from ..console import out, table
    from ..runs import Run

    run = Run(args.run)
    rows = shard_rows(run, query=not args.no_queue)
    if args.json:
        out.print_json(json.dumps(rows))
        return 0
    columns = ["shard", "samples", "status", "slurm task", "slurm", "attempts", "accepted", "rejected",
               "seconds", "error"]
    colour = {"done": "green", "failed": "red", "running": "cyan", "pending": "yellow"}
    body = [[f"{r['shard']:04d}", r["samples"], f"[{colour[r['status']]}]{r['status']}[/]", r["slurm_task"],
             r["slurm"], r["attempts"], r["accepted"], r["rejected"], r["seconds"],
             (r["error"] or "").splitlines()[0][:80] if r["error"] else None] for r in rows]
    out.print(table(f"{run.info['run_id']} ({run.info.get('executor', 'local')})", columns, body))
    total = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    out.print(" · ".join(f"{s} {n}" for s, n in total.items()) + f" (of {len(rows)} shards)", highlight=False)
    return 0
