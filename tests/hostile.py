"""A hostile model for tests: it writes whatever tree it is told to (files, symlinks, FIFOs, a manifest).

`install(folder)` makes a containers folder whose model `hostile` runs through the real
local runtime; the tree comes from the request's `tree` option (a list of entries), so
a test (or a fuzz case) can make any output folder, including ones no helper would write.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT

ADAPTER = r'''
import base64, json, os, sys

request = json.load(open(sys.argv[2]))
out = sys.argv[3]
options = request.get("options", {})
os.makedirs(out, exist_ok=True)
for entry in options.get("tree", []):
    path = os.path.join(out, entry["path"]) if "path" in entry else None
    kind = entry["kind"]
    if kind == "stdout":
        chunk = b"x" * 65536 + b"\n"
        for _ in range(entry["bytes"] // len(chunk)):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        continue
    os.makedirs(os.path.dirname(path) or out, exist_ok=True)
    if kind == "file":
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(entry["data"]))
    elif kind == "dir":
        os.makedirs(path, exist_ok=True)
    elif kind == "symlink":
        os.symlink(entry["to"], path)
    elif kind == "fifo":
        os.mkfifo(path)
if "sleep" in options:
    import time
    time.sleep(options["sleep"])
'''

CARD = """name: hostile
description: writes the tree its request names (tests only)
family: baseline
tasks: [csp, generate]
output: structure
requires: []
licence: MIT
resources: {gpu: none, memory_gb: 1, cpus: 1, seconds_per_sample: 1}
default_options: {}
"""


def install(folder: Path) -> Path:
    """A containers folder holding the hostile model (and the shared helper)."""
    model = folder / "hostile"
    model.mkdir(parents=True, exist_ok=True)
    (model / "adapter.py").write_text(ADAPTER)
    (model / "model.yaml").write_text(CARD)
    if not (folder / "common").exists():
        (folder / "common").symlink_to(ROOT / "containers" / "common")
    return folder


def card():
    import yaml

    from schemas import ModelCard

    return ModelCard.model_validate(yaml.safe_load(CARD))


def file(path: str, data: bytes | str) -> dict:
    import base64

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return {"kind": "file", "path": path, "data": base64.b64encode(raw).decode()}


def manifest(records: list[dict], complete: bool = True, task: str = "csp") -> dict:
    body = {"contract_version": "1.0", "task": task, "seed": 0, "complete": complete, "model": {"name": "hostile"},
            "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"}, "samples": records}
    return file("manifest.json", json.dumps(body))


def ok(target: str, index: int, cif: str, seconds: float = 0.5) -> dict:
    return {"target_id": target, "sample_index": index, "status": "ok", "cif": cif, "seconds": seconds}
