"""gencsp on a real SLURM: job arrays of shards, scancel + resume, time limits, generic arrays.

The array tests run twice: with the local runtime, and as on Jean Zay and GliCID, each task
starting the model's SIF with Apptainer after checking its sha256 (`--runtime apptainer`).
These tests need a running SLURM (`.ci/run` starts a one-node cluster, installs Apptainer
and builds the SIFs). Without one they skip, saying why — except under GENCSP_CI=1, where a
missing service is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import SIF_DIR, module_home
from orchestrator import clusters
from orchestrator.cli import main
from orchestrator.executors.slurm import Resources, Task, queue_states, sif_check, submit_array, wait
from orchestrator.hashing import sha256_file
from orchestrator.runs import Run
from orchestrator.validate import COST_COLUMNS

pytestmark = pytest.mark.slurm
BENCH = ["bench", "--model", "random_search", "--dataset", "perov_5", "--limit", "12", "--shard-size", "4",
         "--executor", "slurm", "--profile", "local"]
TIMING = ["seconds", *COST_COLUMNS]  # columns that differ between two identical runs (measured times)


def slurm_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed here (no sinfo/sbatch); .ci/run installs and starts one"
    try:
        result = subprocess.run(["sinfo", "--noheader", "--format", "%T"], capture_output=True, text=True,
                                timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo does not answer: is slurmctld running?"
    states = result.stdout.split()
    if result.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states):
        return f"no usable SLURM node (sinfo: {result.stdout.strip() or result.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm():
    problem = slurm_problem()
    if problem:
        if os.environ.get("GENCSP_CI") == "1":
            pytest.fail(f"SLURM is required in CI (GENCSP_CI=1): {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def env(tmp_path_factory, slurm):
    """A private gencsp home and an empty user profile file, for every test of this module."""
    with module_home(tmp_path_factory, "slurm") as (root, patch):
        patch.setenv("GENCSP_CLUSTERS", str(root / "clusters.yaml"))
        patch.setenv("GENCSP_SIF_DIR", str(SIF_DIR))  # what a profile's sif_dir does on a cluster
        yield root


@pytest.fixture(scope="module", params=["local", "apptainer"])
def runtime(request, env):
    if request.param == "apptainer":
        request.getfixturevalue("baseline_sifs")
    return request.param


def the_run(folder: Path) -> Run:
    (path,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return Run(path)


def wait_until(predicate, timeout: float, what: str, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def comparable(run: Run) -> pd.DataFrame:
    frame = pd.read_parquet(run.path / "structures.parquet").drop(columns=TIMING)
    return frame.sort_values(["target_id", "sample_index"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(env, runtime):
    """An uninterrupted benchmark through SLURM: 3 shards → one array of 3 tasks."""
    started = time.monotonic()
    assert main([*BENCH, "--runtime", runtime, "--run-dir", str(env / f"reference-{runtime}")]) == 0
    run = the_run(env / f"reference-{runtime}")
    run.wall_seconds = time.monotonic() - started
    return run


def test_bench_runs_one_array_task_per_shard(reference, runtime, capsys):
    run = reference
    (array,) = run.info["slurm"]["arrays"]
    assert len(array["task_ids"]) == 3 and array["shards"] == [0, 1, 2]
    assert run.info["executor"] == "slurm" and run.info["slurm"]["profile"]["name"] == "local"
    for shard, task_id in zip(run.shards(), array["task_ids"], strict=True):
        assert shard.status == "done"
        (task,) = json.loads((shard.path / "slurm.json").read_text())["tasks"]
        assert task["task_id"] == task_id and task["ended"]["state"] == "COMPLETED"
        log = (shard.path / f"slurm-{task_id}.log").read_text()  # the task's own log, in its shard folder
        assert f"run-shard {run.path} {shard.index} --runtime {runtime}" in log and f"shard {shard.index}: done" in log
        if runtime == "apptainer":  # the image checked in the task, then run with the cluster isolation
            assert f"{SIF_DIR}/random_search.sif: OK" in log
            assert " run --containall --cleanenv --net --network none " in shard.log_path.read_text()
    frame = pd.read_parquet(run.path / "structures.parquet")
    assert len(frame) == 12 and (frame["status"] == "accepted").all()
    capsys.readouterr()
    assert main(["status", str(run.path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["status"], r["slurm_task"], r["slurm"]) for r in rows] == \
        [("done", t, "COMPLETED") for t in array["task_ids"]]
    if runtime == "apptainer":
        assert run.info["runtime"]["sif_sha256"] in run.info["slurm"]["checks"][1]
    print(f"\nSLURM bench ({runtime}): 3 array tasks, {run.wall_seconds:.1f} s wall")


def test_scancel_then_resume_gives_the_uninterrupted_result(reference, runtime, env, capsys):
    folder = env / f"interrupted-{runtime}"
    assert main([*BENCH, "--runtime", runtime, "--run-dir", str(folder), "--detach"]) == 0
    run = the_run(folder)
    task_ids = run.info["slurm"]["arrays"][0]["task_ids"]

    def running_shard():  # a task whose run-shard has started on its shard
        queue = queue_states(task_ids)
        for shard, task_id in zip(run.shards(), task_ids, strict=True):
            if task_id in queue and queue[task_id].running and shard.status == "running":
                return shard, task_id
        return None

    shard, task_id = wait_until(running_shard, 120, "a running shard")
    subprocess.run(["scancel", task_id], check=True)
    wait_until(lambda: not queue_states(task_ids), 180, "the array to leave the queue", step=1)
    assert shard.status != "done", "the cancel came too late to interrupt the shard"
    left = subprocess.run(["pgrep", "-f", str(shard.path)], capture_output=True, text=True).stdout
    assert not left, f"processes of the cancelled task are still running: {left}"

    capsys.readouterr()
    assert main(["status", str(run.path), "--json"]) == 0
    rows = {r["shard"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows[shard.index]["status"], rows[shard.index]["slurm"]) == ("pending", "CANCELLED")
    assert sum(r["status"] == "done" for r in rows.values()) == 2

    assert main(["resume", str(run.path)]) == 0
    assert all(s.status == "done" for s in run.shards())
    tasks = json.loads((shard.path / "slurm.json").read_text())["tasks"]
    assert len(tasks) == 2 and tasks[0]["task_id"] == task_id and tasks[0]["ended"]["state"] == "CANCELLED"
    others = [s for s in run.shards() if s.index != shard.index]
    assert all(len(json.loads((s.path / "slurm.json").read_text())["tasks"]) == 1 for s in others)  # not redone
    pd.testing.assert_frame_equal(comparable(run), comparable(reference))


@pytest.mark.slow
def test_time_limit_is_resubmitted_then_recorded_failed(env):
    """A task that outlives its time limit is resubmitted (--retries 1), then its shard fails with the log
    tail; the other shards are collected as usual."""
    (env / "clusters.yaml").write_text(
        "local-1min:\n  extends: local\n  time: 1\n  setup:\n"
        "    - 'case \"$task_log\" in */shards/0001/*) echo \"test: sleeping past the limit\"; sleep 600;; esac'\n")
    folder = env / "timeout"
    args = [*BENCH[:-1], "local-1min", "--runtime", "local", "--retries", "1", "--run-dir", str(folder)]
    assert main(args) == 0
    run = the_run(folder)
    slow, *others = [run.shards()[1], run.shards()[0], run.shards()[2]]
    state = slow.state()
    assert state["status"] == "failed" and state["slurm_state"] == "TIMEOUT"
    assert "TIMEOUT before the shard started (2 submissions)" in state["error"]
    assert "test: sleeping past the limit" in state["log_tail"] and "DUE TO TIME LIMIT" in state["log_tail"]
    tasks = json.loads((slow.path / "slurm.json").read_text())["tasks"]
    assert [(t["ended"]["state"], t["ended"]["outcome"]) for t in tasks] == \
        [("TIMEOUT", "resubmitted"), ("TIMEOUT", "failed")]
    assert [a["shards"] for a in run.info["slurm"]["arrays"]] == [[0, 1, 2], [1]]
    assert all(s.status == "done" for s in others)
    frame = pd.read_parquet(run.path / "structures.parquet")
    assert set(frame.loc[frame["shard"] == 1, "reason"]) == {"shard_failed"}
    assert (frame.loc[frame["shard"] != 1, "status"] == "accepted").all() and len(frame) == 12


def test_submit_array_checks_the_sif_before_each_task(env, tmp_path, monkeypatch):
    """The generic API: any command per task; the sha256 line stops a task whose image differs."""
    monkeypatch.delenv("GENCSP_SIF_DIR")  # the tasks look for the SIF where the identity says
    sif = tmp_path / "images" / "model.sif"
    sif.parent.mkdir()
    sif.write_bytes(b"the image the run recorded")
    good = sif_check({"runtime": "apptainer", "sif": str(sif), "sha256": sha256_file(sif)}, None)
    bad = sif_check({"runtime": "apptainer", "sif": str(sif), "sha256": "0" * 64}, None)
    profile = clusters.get("local")
    tasks = [Task(["sh", "-c", f"echo relaxed {k} > {tmp_path}/out-{k}"], tmp_path / f"log-{k}-%A_%a.txt")
             for k in range(2)]
    ok = submit_array(tasks, tmp_path / "slurm", profile, Resources(seconds=60), name="gencsp-test", checks=good)
    refused = submit_array(tasks[:1], tmp_path / "slurm", profile, Resources(seconds=60), name="gencsp-test",
                           checks=bad)
    ended = {**wait(ok, poll_seconds=1), **wait(refused, poll_seconds=1)}
    assert [(ended[t].state, ended[t].exit_code) for t in ok.task_ids] == [("COMPLETED", 0)] * 2
    assert (ended[refused.task_ids[0]].state, ended[refused.task_ids[0]].exit_code) == ("FAILED", 4)
    assert (tmp_path / "out-1").read_text() == "relaxed 1\n"
    log = (tmp_path / f"log-0-{refused.task_ids[0]}.txt").read_text()
    assert "is not the image this run recorded" in log and "FAILED" in log
