"""The Apptainer runtime: the exact command line, and its outcomes through a stand-in binary.

No apptainer binary is packaged here; a stand-in script plays it (logging its argv
and exiting as told) so that the runtime's real code path runs around it.
"""

import os
import shutil
from pathlib import Path

import pytest

from orchestrator import models, runtimes
from orchestrator.runtimes.apptainer import ApptainerRuntime
from orchestrator.runtimes.base import Mount


@pytest.fixture
def card():
    return models.get("random_search")


def test_exact_command_line(tmp_path, card):
    runtime = ApptainerRuntime(binary="apptainer", images=tmp_path)
    mounts = [Mount(tmp_path / "request.json", "/io/request.json"), Mount(tmp_path / "out", "/io/out", False)]
    assert runtime.command(card, ["sample", "/io/request.json", "/io/out"], mounts, gpu=False) == [
        "apptainer", "run", "--containall", "--cleanenv", "--net", "--network", "none",
        "--pwd", "/work", "--env", "PYTHONHASHSEED=0",
        "--bind", f"{tmp_path}/request.json:/io/request.json:ro", "--bind", f"{tmp_path}/out:/io/out:rw",
        f"{tmp_path}/random_search.sif", "sample", "/io/request.json", "/io/out"]
    gpu = ApptainerRuntime(binary="singularity", images=tmp_path, network_isolation=False)
    command = gpu.command(card, ["sample"], [], gpu=True)
    assert command[:5] == ["singularity", "run", "--containall", "--cleanenv", "--nv"]
    assert "--network" not in command


STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "{log}"
echo "INFO: pretending to be apptainer"
exit {code}
"""


def stand_in(tmp_path, code):
    binary = tmp_path / "apptainer"
    binary.write_text(STAND_IN.format(log=tmp_path / "argv.txt", code=code))
    binary.chmod(0o755)
    (tmp_path / "random_search.sif").write_bytes(b"SIF")
    return ApptainerRuntime(binary=str(binary), images=tmp_path)


def test_exit_255_is_a_runtime_failure(tmp_path, card):
    runtime = stand_in(tmp_path, 255)
    result = runtime.execute(card, ["sample", "/io/request.json", "/io/out"], [], tmp_path / "log.txt", timeout=30)
    assert result.exit_code == 255 and result.runtime_failure.startswith(f"{tmp_path}/apptainer failed to start")
    assert (tmp_path / "argv.txt").read_text().splitlines()[0] == "run"
    assert "pretending" in (tmp_path / "log.txt").read_text()


def test_model_exit_codes_pass_through(tmp_path, card):
    result = stand_in(tmp_path, 1).execute(card, ["sample"], [], tmp_path / "log.txt")
    assert result.exit_code == 1 and result.runtime_failure is None


def test_missing_sif_says_what_to_do(tmp_path, card):
    result = ApptainerRuntime(binary="apptainer", images=tmp_path).execute(card, [], [], tmp_path / "log")
    assert "run `gencsp sif random_search`" in result.runtime_failure


def test_identity_records_the_sif_sha256(tmp_path, card):
    import hashlib

    identity = stand_in(tmp_path, 0).identity(card)
    assert identity["sif_sha256"] == hashlib.sha256(b"SIF").hexdigest()


def test_sif_dir_from_the_environment(monkeypatch, tmp_path, card):
    monkeypatch.setenv("GENCSP_SIF_DIR", str(tmp_path))
    assert ApptainerRuntime(binary="apptainer").sif(card) == tmp_path / "random_search.sif"


def test_auto_prefers_docker_then_apptainer_then_local(monkeypatch, tmp_path):
    from orchestrator import images

    monkeypatch.setattr(images, "daemon_available", lambda: False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert runtimes.get_runtime("auto").name == "local"
    shutil.copy(stand_in(tmp_path, 0).binary, tmp_path / "singularity")
    os.unlink(tmp_path / "apptainer")
    runtime = runtimes.get_runtime("auto")
    assert runtime.name == "apptainer" and Path(runtime.binary).name == "singularity"
    monkeypatch.setattr(images, "daemon_available", lambda: True)
    assert runtimes.get_runtime("auto").name == "docker"
