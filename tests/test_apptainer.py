"""The Apptainer runtime: its exact command line, its error paths, and the real thing.

The first tests play apptainer with a stand-in script (its argv logged, exit code as told)
for outcomes a real container does not give on demand. The rest run Apptainer for real
(installed by .ci/apptainer/install) on the baseline SIFs that .ci/run builds: isolation,
time limits, check-image, and bench rows equal to Docker's.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import SIF_DIR
from orchestrator import models, runtimes
from orchestrator.runtimes.apptainer import ApptainerRuntime
from orchestrator.runtimes.base import Mount


@pytest.fixture
def card():
    return models.get("random_search")


def test_exact_command_line(tmp_path, card):
    runtime = ApptainerRuntime(binary="apptainer", images=tmp_path)
    mounts = [Mount(tmp_path / "request.json", "/io/request.json"), Mount(tmp_path / "out", "/io/out", False),
              Mount(tmp_path / "work", "/work", False)]
    assert runtime.command(card, ["sample", "/io/request.json", "/io/out"], mounts, gpu=False) == [
        "apptainer", "run", "--containall", "--cleanenv", "--net", "--network", "none",
        "--pwd", "/work", "--env", "PYTHONHASHSEED=0",
        "--bind", f"{tmp_path}/request.json:/io/request.json:ro", "--bind", f"{tmp_path}/out:/io/out:rw",
        "--bind", f"{tmp_path}/work:/work:rw", f"{tmp_path}/random_search.sif", "sample", "/io/request.json", "/io/out"]
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


def test_cuda_build_check_reads_the_probe():
    from orchestrator.image_checks import cuda_check

    assert cuda_check({"python": "3.9.2", "cuda_env": None, "torch": None}).passed
    broken = cuda_check({"python": "3.9.2", "cuda_env": "11.1.1", "torch": "1.12.1+cpu", "torch_cuda": None})
    assert not broken.passed and "cannot use a GPU" in broken.detail
    cuda = cuda_check({"python": "3.9.2", "cuda_env": "11.3.1", "torch": "1.12.1+cu113", "torch_cuda": "11.3"})
    assert cuda.passed and cuda.detail == "Python 3.9.2; torch 1.12.1+cu113 built for CUDA 11.3 (base image CUDA 11.3.1)"


# --- Apptainer for real, on the baseline SIFs ------------------------------------------------------------


@pytest.fixture
def sif_env(home, monkeypatch, baseline_sifs):
    """A private gencsp home whose runs find the baseline SIFs (as GENCSP_SIF_DIR does on a cluster)."""
    monkeypatch.setenv("GENCSP_SIF_DIR", str(SIF_DIR))
    return baseline_sifs


@pytest.mark.apptainer
def test_sif_records_its_sha256_and_keeps_the_image_labels(baseline_sifs, docker_client, apptainer):
    from orchestrator import sif
    from orchestrator.hashing import sha256_file

    for model, entry in baseline_sifs.items():
        path = Path(entry["sif"])
        image = docker_client.images.get(f"gencsp/{model}")
        assert path == SIF_DIR / f"{model}.sif" and entry["sif_image_id"] == image.id
        assert entry["sif_sha256"] == sha256_file(path) and entry["sif_bytes"] == path.stat().st_size
        assert (SIF_DIR / f"{model}.sif.sha256").read_text() == f"{entry['sif_sha256']}  {model}.sif\n"
        labels = sif.labels(apptainer, path)
        assert {k: v for k, v in labels.items() if k.startswith("gencsp.")} == image.labels
        assert sif.entry_point(apptainer, path) == ["/opt/venv/bin/python", "/opt/gencsp/adapter.py"]
        assert not (SIF_DIR / f"{model}.tar").exists()  # the docker save archive is removed once built


PROBE = """
import json, os, socket
found = {"uid": os.getuid(), "home": sorted(os.listdir(os.environ.get("HOME", "/"))),
         "secret": os.environ.get("GENCSP_TEST_SECRET_TOKEN"), "pid1": open("/proc/1/cmdline").read()[:60]}
for what, action in (("network", lambda: socket.create_connection(("151.101.0.223", 443), timeout=5)),
                     ("dns", lambda: socket.getaddrinfo("pypi.org", 443)),
                     ("request", lambda: open("/io/request.json", "a")),
                     ("rootfs", lambda: open("/opt/gencsp/x", "w")),
                     ("out", lambda: open("/io/out/written", "w"))):
    try:
        action()
        found[what] = "allowed"
    except Exception as exc:
        found[what] = type(exc).__name__
print(json.dumps(found))
"""


@pytest.mark.apptainer
@pytest.mark.parametrize("name", ["apptainer", "singularity"])
def test_isolation_inside_the_sif(tmp_path, monkeypatch, baseline_sifs, name):
    """The runtime's own options, with `exec` and a probe: no network, read-only binds, clean env, own PIDs."""
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"no `{name}` command here")
    monkeypatch.setenv("GENCSP_TEST_SECRET_TOKEN", "must-not-leak")
    (tmp_path / "request.json").write_text("{}")
    (tmp_path / "out").mkdir()
    mounts = [Mount(tmp_path / "request.json", "/io/request.json"), Mount(tmp_path / "out", "/io/out", False)]
    runtime = ApptainerRuntime(binary=binary, images=SIF_DIR)
    card = models.get("random_search")
    command = runtime.command(card, ["/opt/venv/bin/python", "-c", PROBE], mounts, gpu=False, verb="exec")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["network"] == "OSError" and found["dns"] == "gaierror", found
    assert found["request"] == "OSError" and found["rootfs"] == "OSError" and found["out"] == "allowed", found
    assert found["secret"] is None and found["home"] == [] and "systemd" not in found["pid1"], found
    assert (tmp_path / "out" / "written").stat().st_uid == os.getuid()
    assert runtime.interfaces(card) == ["lo"]
    assert len(ApptainerRuntime(binary=binary, images=SIF_DIR, network_isolation=False).interfaces(card)) > 1


@pytest.mark.apptainer
@pytest.mark.slow
def test_an_unprivileged_user_gets_no_network_either(baseline_sifs, monkeypatch):
    """As on a cluster without setuid: Apptainer in its user-namespace mode still accepts `--network none`.

    The wrapper of .ci/apptainer runs it as `nobody` here (GENCSP_APPTAINER_USER); with no usable
    FUSE on this kind of VM the SIF is unpacked to a temporary sandbox first (~15 s)."""
    import tempfile

    if not Path(shutil.which("apptainer") or "").read_bytes().startswith(b"#!/bin/sh"):
        pytest.skip("apptainer here is not the .ci/apptainer wrapper")
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)  # readable by nobody; a hard link shares the SIF's inode (mode 0755)
        try:
            os.link(SIF_DIR / "random_search.sif", Path(folder) / "random_search.sif")
        except OSError:  # another filesystem
            shutil.copy(SIF_DIR / "random_search.sif", folder)
        monkeypatch.setenv("GENCSP_APPTAINER_USER", "65534:65534")
        assert ApptainerRuntime(images=Path(folder)).interfaces(models.get("random_search")) == ["lo"]


@pytest.mark.apptainer
def test_time_limit_kills_the_container(tmp_path, baseline_sifs):
    from orchestrator.runtimes.base import run_process

    runtime = ApptainerRuntime(images=SIF_DIR)
    command = runtime.command(models.get("random_search"), ["sleep", "3917"], [], gpu=False, verb="exec")
    result = run_process(command, tmp_path / "log.txt", timeout=3)
    assert result.runtime_failure == "timed out after 3 s"
    left = subprocess.run(["pgrep", "-f", "sleep 3917"], capture_output=True, text=True)
    assert left.stdout == "", "the container outlived its time limit"


@pytest.mark.apptainer
@pytest.mark.parametrize("model", ["random_search", "replay"])
def test_check_image_passes_for_the_baseline_sifs(sif_env, model):
    from orchestrator.conformance import check_image

    checks = {c.name: c for c in check_image(model, ApptainerRuntime())}
    assert all(c.passed for c in checks.values()), checks
    assert checks["no network"].detail == "interfaces inside the container: lo"
    assert checks["SIF file"].detail.endswith("= the one recorded at build")
    assert checks["entry point"].detail == "/opt/venv/bin/python /opt/gencsp/adapter.py"
    assert checks["SIF format"].detail == "SIF version 01, FS (Squashfs/*System/amd64) (also read by SingularityCE 3.x)"
    assert checks["GPU flag (--nv)"].detail.startswith("accepted; 0 GPU device(s) inside")
    assert checks["CUDA build"].detail.startswith("Python 3.11")


@pytest.mark.apptainer
def test_check_image_tells_a_wrong_sif(tmp_path, sif_env):
    """Another model's SIF under this model's name, with a sha256 file that does not match."""
    from orchestrator.image_checks import sif_checks

    (tmp_path / "replay.sif").symlink_to(SIF_DIR / "random_search.sif")
    (tmp_path / "replay.sif.sha256").write_text("0" * 64 + "  replay.sif\n")
    checks = {c.name: c for c in sif_checks(ApptainerRuntime(images=tmp_path), models.get("replay"))}
    assert not checks["SIF file"].passed and "!= recorded 0000" in checks["SIF file"].detail
    assert not checks["SIF labels"].passed and "gencsp.model is 'random_search'" in checks["SIF labels"].detail
    assert checks["entry point"].passed and checks["GPU flag (--nv)"].passed


def measured(key: str) -> bool:
    """Timings (wall, CPU, model seconds): what two identical runs never share."""
    return "seconds" in key


def bench_row(runtime: str, model: str, options: list[str], folder: Path) -> tuple[dict, pd.DataFrame]:
    """`gencsp bench` through one runtime: its leaderboard row and metrics without cost fields, its structures."""
    from orchestrator.cli import main
    from orchestrator.leaderboard import load_entry

    assert main(["bench", "--model", model, "--dataset", "perov_5", "--task", "csp", "--limit", "4", "--seed", "7",
                 "--samples-per-target", "2", "--shard-size", "4", *options, "--runtime", runtime, "--no-chgnet",
                 "--timeout", "900", "--run-dir", str(folder)]) == 0  # a loaded machine is slow, not different
    (run,) = folder.iterdir()
    entry = load_entry(run)
    assert json.loads((run / "run.json").read_text())["runtime"]["runtime"] == runtime
    row = {**entry.identity(), **{k: v for k, v in entry.values().items() if not measured(k)},
           **{k: v for k, v in entry.summary.items() if not measured(k)}, "run_id": run.name}
    structures = pd.read_parquet(run / "structures.parquet")
    structures = structures.drop(columns=[c for c in structures.columns if measured(c)])
    assert len(structures) == 8 and structures["status"].eq("accepted").all(), (runtime, structures["reason"])
    return row, structures.sort_values(["target_id", "sample_index"]).reset_index(drop=True)


@pytest.mark.apptainer
@pytest.mark.parametrize("model, options", [("random_search", []), ("replay", ["--option", "source_split=test"])])
def test_bench_rows_from_docker_and_apptainer_are_identical(tmp_path, sif_env, model, options):
    docker_row, docker_structures = bench_row("docker", model, options, tmp_path / "docker")
    apptainer_row, apptainer_structures = bench_row("apptainer", model, options, tmp_path / "apptainer")
    assert apptainer_row == docker_row
    pd.testing.assert_frame_equal(apptainer_structures, docker_structures)
    print(f"\n{model}: Docker and Apptainer rows identical on {len(docker_row)} fields", file=sys.stderr)
