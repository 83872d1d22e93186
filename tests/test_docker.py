"""The Docker runtime, for real: confinement, failures, logs, identical results."""

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from orchestrator import models, paths
from orchestrator.collect import collect
from orchestrator.conformance import check_image
from orchestrator.executors.local import ShardPolicy, run_shards
from orchestrator.plan import plan
from orchestrator.runs import RunConfig
from orchestrator.runtimes.docker import DockerRuntime
from orchestrator.runtimes.local import LocalRuntime
from orchestrator.scaffold import new_model
from schemas import Task

pytestmark = pytest.mark.docker


def shard_containers(client, image: str) -> set[str]:
    return {c.id for c in client.containers.list(all=True, filters={"label": "gencsp.role=shard", "ancestor": image})}


@pytest.fixture
def no_shard_left(docker_client):
    """no_shard_left(image): the test removed every shard container it made of that image (a shared daemon
    may run other shards meanwhile)."""
    before: dict[str, set[str]] = {}

    def check(image: str) -> bool:
        return not (shard_containers(docker_client, image) - before[image])

    for image in ("gencsp/random_search", "gencsp/net_probe"):
        try:
            before[image] = shard_containers(docker_client, image)
        except Exception:  # noqa: BLE001 - an image not built yet has no container
            before[image] = set()
    return check


def bench(runtime, tmp_path, **kw):
    config = RunConfig(**{"model": "random_search", "dataset": "perov_5", "split": "test", "task": Task.csp,
                          "limit": 5, "samples_per_target": 2, "shard_size": 4, **kw})
    card = models.get(config.model)
    run, _ = plan(config, card, tmp_path)
    run_shards(run, runtime, card, ShardPolicy(), progress=False)
    return run, collect(run)


def test_docker_gives_the_same_structures_as_the_host(home, tmp_path, baseline_images, no_shard_left):
    run, frame = bench(DockerRuntime(), tmp_path / "docker")
    _, local = bench(LocalRuntime(), tmp_path / "local")
    assert len(frame) == 10 and (frame["status"] == "accepted").all()
    assert list(frame["cif"]) == list(local["cif"])
    assert len(run.shards()) == 3
    # files belong to the caller, logs are kept, containers are gone
    cif = next((run.shards()[0].out_dir / "structures").iterdir())
    assert cif.stat().st_uid == os.getuid()
    assert run.shards()[0].log_path.exists()
    assert no_shard_left("gencsp/random_search")


def test_replay_through_docker_mounts_the_split_read_only(home, tmp_path, baseline_images):
    _, frame = bench(DockerRuntime(), tmp_path, model="replay", task=Task.generate, num_samples=6,
                     options={"source_split": "val"})
    assert (frame["status"] == "accepted").all() and len(frame) == 6


@pytest.fixture(scope="module")
def probe_image(docker_client, tmp_path_factory):
    """A scaffolded model whose adapter tries the network and the read-only mounts."""
    from orchestrator import images

    root = tmp_path_factory.mktemp("containers")
    (root / "common").symlink_to(ROOT / "containers" / "common")
    folder = new_model("net_probe", root)
    adapter = folder / "adapter.py"
    adapter.write_text(adapter.read_text().replace('''def sample(session):''', '''def attempts():
    import socket
    found = []
    for what, action in (("network", lambda: socket.create_connection(("151.101.0.223", 443), timeout=5)),
                         ("dns", lambda: socket.getaddrinfo("pypi.org", 443)),
                         ("request", lambda: open("/io/request.json", "a")),
                         ("rootfs", lambda: open("/opt/gencsp/x", "w"))):
        try:
            action()
            found.append(what + ": allowed")
        except Exception as exc:
            found.append(what + ": " + type(exc).__name__)
    return "; ".join(found)


def sample(session):
    if session.options.get("probe"):
        raise RuntimeError(attempts())
    if session.options.get("sleep"):
        import time
        time.sleep(session.options["sleep"])'''))
    old = paths.CONTAINERS_DIR
    paths.CONTAINERS_DIR = root
    try:
        images.build("net_probe")
    finally:
        paths.CONTAINERS_DIR = old
    yield root
    docker_client.images.remove("gencsp/net_probe", force=True)


def probe_run(home, tmp_path, root, monkeypatch, **options):
    monkeypatch.setattr(paths, "CONTAINERS_DIR", root)
    card = models.get("net_probe", root)
    config = RunConfig(model="net_probe", dataset="mini", split="test", task=Task.csp, limit=1, options=options)
    run, _ = plan(config, card, tmp_path)
    states = run_shards(run, DockerRuntime(), card, ShardPolicy(retries=0, timeout=options.get("timeout")),
                        progress=False)
    return run, states, collect(run)


def test_network_and_read_only_mounts_are_enforced(home, tmp_path, probe_image, monkeypatch):
    _, _, frame = probe_run(home, tmp_path, probe_image, monkeypatch, probe=True)
    message = frame["message"][0]
    assert "network: OSError" in message and "dns: gaierror" in message, message
    assert "request: OSError" in message and "rootfs: OSError" in message, message


def test_scaffolded_model_passes_check_image(home, probe_image, monkeypatch):
    monkeypatch.setattr(paths, "CONTAINERS_DIR", probe_image)
    checks = {c.name: c for c in check_image("net_probe", DockerRuntime())}
    assert all(c.passed for c in checks.values()), checks
    assert checks["no network"].detail == "interfaces inside the container: lo"


def test_time_limit_kills_and_removes_the_container(home, tmp_path, probe_image, monkeypatch, no_shard_left):
    run, states, frame = probe_run(home, tmp_path, probe_image, monkeypatch, sleep=120, timeout=5)
    assert states[0]["runtime_failure"] == "timed out after 5 s"
    assert states[0]["status"] == "failed" and set(frame["reason"]) == {"timeout"}
    assert no_shard_left("gencsp/net_probe")


def test_a_missing_image_is_never_pulled(home, tmp_path):
    card = models.get("random_search").model_copy(update={"image": "gencsp/not-built-anywhere"})
    shard_dir = tmp_path / "0000"
    shard_dir.mkdir()
    result = DockerRuntime().execute(card, ["sample"], [], shard_dir / "log.txt", timeout=10)
    assert result.runtime_failure == "image gencsp/not-built-anywhere is not built here; run `gencsp build random_search`"


def test_check_image_passes_for_the_baselines(home, baseline_images):
    for model in ("random_search", "replay"):
        failed = [c for c in check_image(model, DockerRuntime()) if not c.passed]
        assert not failed, (model, failed)


@pytest.mark.parametrize("model", ["evolutionary", "pso"])
def test_check_image_passes_for_the_search_baselines(home, docker_client, model):
    """CHGNet searches in a container with one CPU: the contract, no network, same seed same structures."""
    from conftest import need
    from orchestrator import images

    need(images.image_exists(docker_client, f"gencsp/{model}"), f"gencsp/{model} is not built (gencsp build {model})")
    checks = check_image(model, DockerRuntime())
    assert not [c for c in checks if not c.passed], checks


def test_cli_bench_through_docker_prints_a_row(home, tmp_path, baseline_images):
    from orchestrator.cli import main

    assert main(["bench", "--model", "random_search", "--dataset", "perov_5", "--limit", "3",
                 "--runtime", "docker", "--run-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert Path(run, "structures.parquet").exists()
    assert pd.read_parquet(Path(run, "structures.parquet"))["status"].eq("accepted").all()


@pytest.mark.parametrize("model, options", [("random_search", []), ("replay", ["--option", "source_split=test"])])
def test_bench_row_equals_evaluate_on_the_same_structures(home, tmp_path, baseline_images, model, options):
    """The leaderboard numbers of a Docker bench are those `gencsp evaluate` gives on the exported files."""
    import json

    from orchestrator.cli import main

    assert main(["bench", "--model", model, "--dataset", "perov_5", "--task", "csp", "--limit", "6", *options,
                 "--runtime", "docker", "--no-chgnet", "--run-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    structures, targets = pd.read_parquet(run / "structures.parquet"), pd.read_parquet(run / "targets.parquet")
    structures[["target_id", "sample_index", "cif"]].to_csv(tmp_path / "predictions.csv", index=False)
    targets[["material_id", "cif"]].to_csv(tmp_path / "reference.csv", index=False)
    assert main(["evaluate", "--task", "csp", "--predictions", str(tmp_path / "predictions.csv"),
                 "--reference", str(tmp_path / "reference.csv"), "--kind", "perovskite", "--profile", "gencsp",
                 "--no-chgnet", "--quiet", "--out", str(tmp_path / "metrics.json")]) == 0
    bench = json.loads((run / "metrics" / "summary.json").read_text())
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    # a run's own numbers: its timings and the compute its samples reported (files alone have neither)
    costs = {k for k in bench if "seconds" in k or "evaluations" in k}
    assert {"wall_seconds_per_sample", "cpu_seconds_per_sample"} <= costs
    assert set(bench) - set(evaluated) == costs - set(evaluated)
    assert {k: v for k, v in bench.items() if k not in costs} == {k: v for k, v in evaluated.items() if k not in costs}
    if model == "replay":  # the truths themselves: the calibration ceiling
        assert evaluated["cdvae.match_rate"] == 1.0


def test_sigterm_removes_the_running_container_and_the_run_resumes(home, tmp_path, probe_image, monkeypatch,
                                                                   docker_client, no_shard_left):
    """A signal ends gencsp, not the daemon's containers: `gencsp bench` removes what it started."""
    import signal
    import threading

    from orchestrator.cli import main

    monkeypatch.setattr(paths, "CONTAINERS_DIR", probe_image)
    seen = []

    def terminate_once_running():
        for _ in range(1200):
            running = docker_client.containers.list(filters={"ancestor": "gencsp/net_probe", "status": "running"})
            if running:
                seen.extend(c.id for c in running)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.25)

    threading.Thread(target=terminate_once_running, daemon=True).start()
    argv = ["bench", "--model", "net_probe", "--dataset", "mini", "--split", "test", "--task", "csp", "--limit", "1",
            "--option", "sleep=300", "--runtime", "docker", "--retries", "0", "--run-dir", str(tmp_path / "bench")]
    assert main(argv) == 130
    assert seen and no_shard_left("gencsp/net_probe")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was only for the command
    (run,) = (tmp_path / "bench").iterdir()
    assert (run / "run.json").is_file()  # the run is on disk: the same command resumes it
