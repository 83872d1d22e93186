"""Adapter test support (load a model folder's adapter, run it as the image would) and folder checks.

Only the upstream process is replaced (by stand-in scripts that write the exact upstream files);
the adapter, the helper and the validation are the real ones.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from orchestrator.validate import validate_shard
from schemas import SampleRequest

CONTAINERS = ROOT / "containers"


def load_adapter(model: str, module: str = "adapter"):
    """Import containers/<model>/<module>.py as a module named `<model>_<module>`."""
    for folder in (CONTAINERS / "common", CONTAINERS / model):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"{model}_{module}", CONTAINERS / model / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def run_image(model: str, tmp: Path, request: SampleRequest | dict, upstream: Path, mounts: dict | None = None,
              verb: str = "sample", timeout: float = 120, env: dict | None = None):
    """`<verb> /io/request.json /io/out` of a model folder on the host, as its image would run it.

    `mounts` maps container paths (/ckpt/..., /data/...) to host paths; /work is a fresh folder; `env` adds
    variables (the image's ENV).
    Returns (completed process, out folder, report or None).
    """
    work, out = tmp / "work", tmp / "out"
    work.mkdir(exist_ok=True)
    request_path = tmp / "request.json"
    text = request.model_dump_json(exclude_none=True) if isinstance(request, SampleRequest) else json.dumps(request)
    request_path.write_text(text)
    path_map = {"/work": str(work), "/io/out": str(out), **{k: str(v) for k, v in (mounts or {}).items()}}
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp), "PYTHONPATH": os.pathsep.join(
        [str(CONTAINERS / "common"), str(CONTAINERS / model)]), "GENCSP_UPSTREAM": str(upstream),
        "GENCSP_PATH_MAP": json.dumps(path_map), "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0", **(env or {})}
    proc = subprocess.run([sys.executable, str(CONTAINERS / model / "adapter.py"), verb, str(request_path), str(out)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp)
    report = None
    if verb == "sample" and isinstance(request, SampleRequest) and (out / "manifest.json").exists():
        report = validate_shard(out, request)
    return proc, out, report


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


# --- checks every seed-model folder must pass -------------------------------------------------


SEED_MODELS = ("cdvae", "score_langevin", "gan", "wyckoff_diffusion")


@pytest.mark.parametrize("model", SEED_MODELS)
def test_model_folder_is_complete_and_its_python_runs_on_38(model):
    from orchestrator import models

    card = models.get(model)
    folder = CONTAINERS / model
    assert {"Dockerfile", "model.yaml", "adapter.py", "README.md"} <= {p.name for p in folder.iterdir()}
    assert card.upstream and len(card.upstream.commit or "") == 40, "upstream pinned to a full commit"
    for source in folder.glob("*.py"):
        tree = ast.parse(source.read_text(), feature_version=(3, 8))
        annotated = [n for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) or getattr(n, "returns", None)]
        assert not annotated, f"{source}: annotations may use 3.9+ syntax"
    dockerfile = (folder / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE" in dockerfile and card.upstream.commit in dockerfile
    assert 'ENTRYPOINT ["' in dockerfile and "/opt/gencsp/adapter.py" in dockerfile
    assert "COPY ca-bundle.crt /usr/local/share/gencsp/ca-bundle.crt" in dockerfile
