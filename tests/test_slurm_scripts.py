"""Job scripts of the cluster profiles against golden files, and errors raised before submitting.

Regenerate the golden files after an intended change with GENCSP_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator import clusters
from orchestrator.cli import main
from orchestrator.clusters import ProfileError
from orchestrator.executors.slurm import shard_task, sif_check
from orchestrator.executors.slurm_array import Resources, Task, render_script, sbatch_parameters, sh_word

GOLDEN = Path(__file__).parent / "golden"
RUN = Path("/lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789")
GENCSP = "/lustre/fswork/projects/rech/abc/uxy12zz/gencsp/.venv/bin/gencsp"
IDENTITY = {"runtime": "apptainer", "sif": "/home/u/.cache/gencsp/images/cdvae.sif", "sha256": "ab" * 32}
OVERRIDES = {"jean-zay-v100": {"account": "abc"}, "jean-zay-a100": {"account": "abc"},
             "jean-zay-h100": {"account": "abc"}, "jean-zay-cpu": {"account": "abc"},
             "glicid-nautilus": {"account": "gencsp-proj", "time": "04:00:00"}, "local": {}}


@pytest.fixture(autouse=True)
def no_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCSP_CLUSTERS", str(tmp_path / "none.yaml"))


def shard_script(name: str) -> str:
    """The array of a resumed run (shards 0, 3, 7 left) of a GPU model, on profile `name`."""
    profile = clusters.get(name, OVERRIDES[name])
    gpu = profile.gpus_per_task > 0
    tasks = [shard_task(GENCSP, RUN, k, "apptainer", 3720, gpu) for k in (0, 3, 7)]
    resources = Resources(cpus=1, gpus=profile.gpus_per_task if gpu else 0, memory_gb=16, seconds=3720)
    return render_script(tasks, RUN / "slurm", profile, resources, name="gencsp-cdvae",
                         checks=sif_check(IDENTITY, profile.sif_dir))


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_job_script_matches_golden(name):
    text = shard_script(name)
    path = GOLDEN / f"{name}.sh"
    if os.environ.get("GENCSP_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with GENCSP_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_golden_scripts_say_what_each_site_needs():
    h100 = (GOLDEN / "jean-zay-h100.sh").read_text()
    for line in ("#SBATCH --account=abc@h100", "#SBATCH --constraint=h100", "#SBATCH --gres=gpu:1",
                 "#SBATCH --cpus-per-task=24", "#SBATCH --hint=nomultithread", "#SBATCH --qos=qos_gpu_h100-t3",
                 "#SBATCH --array=0-2%3", "module purge\nmodule load arch/h100\nmodule load singularity",
                 'export GENCSP_SIF_DIR="$SINGULARITY_ALLOWED_DIR"', "sha256sum -c -"):
        assert line in h100, line
    assert "--mem" not in h100  # memory follows the cores on Jean Zay
    assert h100.startswith("#!/bin/bash\n")
    glicid = (GOLDEN / "glicid-nautilus.sh").read_text()
    for line in ("#!/bin/sh\n", "#SBATCH --clusters=nautilus", "#SBATCH --account=gencsp-proj",
                 "#SBATCH --time=240", "#SBATCH --partition=gpu", "module load apptainer"):
        assert line in glicid, line
    assert "/bin/bash" not in glicid
    for text in (h100, glicid):
        assert "--signal" not in text and "SUBMITIT" not in text  # submitit's pickled-job protocol is dropped
        assert f"{GENCSP} run-shard {RUN} 7 --runtime apptainer --timeout 3720 --gpu" in text


@pytest.mark.skipif(shutil.which("dash") is None and not Path("/bin/sh").exists(), reason="no POSIX sh")
@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_job_scripts_are_posix_sh(name):
    """`sh -n` (dash on Debian) parses every generated script: Guix nodes have no bash."""
    result = subprocess.run(["sh", "-n"], input=shard_script(name), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_log_paths_expand_slurm_placeholders():
    assert sh_word("/runs/a b/shards/0003/slurm-%A_%a.log") == \
        "'/runs/a b/shards/0003/slurm-'${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log"
    assert sh_word("/runs/x/%j.log") == "/runs/x/${SLURM_JOB_ID}.log"


def test_memory_becomes_cores_where_memory_follows_cores():
    cpu = clusters.get("jean-zay-cpu", {"account": "abc"})
    params = sbatch_parameters(cpu, Resources(cpus=2, memory_gb=40, seconds=600), "x")
    assert params["cpus_per_task"] == 10 and params["mem"] is None  # 40 GB / 4 GB per core
    local = clusters.get("local")
    params = sbatch_parameters(local, Resources(cpus=2, memory_gb=1.5, seconds=600), "x")
    assert params["cpus_per_task"] == 2 and params["mem"] == "1536MB"


def test_gpu_and_profile_must_agree():
    with pytest.raises(ProfileError, match="is for GPU work and this work uses no GPU"):
        sbatch_parameters(clusters.get("jean-zay-h100", {"account": "abc"}), Resources(), "x")
    with pytest.raises(ProfileError, match="has no GPUs"):
        sbatch_parameters(clusters.get("local"), Resources(gpus=1), "x")


def test_render_script_needs_tasks():
    with pytest.raises(ValueError):
        render_script([], Path("/x"), clusters.get("local"), Resources())


def test_a_task_runs_its_command_verbatim_into_its_log(tmp_path):
    """The script runs outside SLURM too (#SBATCH lines are comments): quoting and logs are real."""
    tasks = [Task(["printf", "%s|", "it's $HOME", "a b"], tmp_path / "t0" / "log-%A_%a.txt"),
             Task('echo "$GENCSP_TEST_VALUE" done', tmp_path / "t1" / "log-%A_%a.txt")]
    profile = clusters.get("local", {"setup": ["GENCSP_TEST_VALUE=from-setup"]})
    script = tmp_path / "job.sh"
    script.write_text(render_script(tasks, tmp_path, profile, Resources()))
    for index in (0, 1):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_ARRAY_JOB_ID": "41", "SLURM_JOB_ID": "42"}
        (tmp_path / f"t{index}").mkdir()
        assert subprocess.run(["sh", str(script)], env=env).returncode == 0
    first = (tmp_path / "t0" / "log-41_0.txt").read_text()
    assert "it's $HOME|a b|" in first and "task 41_0 (job 42)" in first
    assert "from-setup done" in (tmp_path / "t1" / "log-41_1.txt").read_text()
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "5"}
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "no task 5" in result.stderr


def test_missing_account_fails_before_submitting(home, tmp_path, capsys):
    """bench on Jean Zay without an account: one clear line, exit 1, no job script, no SLURM record."""
    code = main(["bench", "--model", "random_search", "--dataset", "mini", "--limit", "2", "--runtime", "local",
                 "--executor", "slurm", "--profile", "jean-zay-h100", "--run-dir", str(tmp_path / "runs")])
    assert code == 1
    message = capsys.readouterr().err
    assert "jean-zay-h100" in message and "`account` is mandatory" in message
    run = next((tmp_path / "runs").iterdir())
    assert not (run / "slurm").exists()
    assert not list(run.glob("shards/*/slurm.json"))


def test_slurm_executor_needs_a_profile(home, tmp_path, capsys):
    code = main(["bench", "--model", "random_search", "--dataset", "mini", "--limit", "1", "--runtime", "local",
                 "--executor", "slurm", "--run-dir", str(tmp_path / "runs")])
    assert code == 1 and "needs --profile" in capsys.readouterr().err


def test_one_follower_per_run(home, tmp_path):
    """A second gencsp following the same run would submit its shards twice: it is refused."""
    import fcntl

    from orchestrator import models
    from orchestrator.executors import slurm
    from orchestrator.executors.slurm_array import SlurmError
    from orchestrator.runs import Run

    assert main(["bench", "--model", "random_search", "--dataset", "mini", "--limit", "1", "--runtime", "local",
                 "--run-dir", str(tmp_path / "runs")]) == 0
    run = Run(next((tmp_path / "runs").iterdir()))
    plan = slurm.make_plan(run, clusters.get("local"), "local")
    (run.path / "slurm").mkdir()
    with open(run.path / "slurm" / "follow.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SlurmError, match="another gencsp is following this run"):
            slurm.start(run, models.get("random_search"), plan)
