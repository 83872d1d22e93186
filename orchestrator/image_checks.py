"""What `gencsp check-image --runtime apptainer` checks of a SIF besides the contract runs.

None of it needs a GPU, so it is what a SIF built from a CUDA variant can be checked for on
a workstation (or in CI) before it is copied to a cluster: the file is the one recorded,
in the SIF format SingularityCE reads too, its labels name this model, contract and upstream commit, its runscript starts the model's
entry point, `--nv` is accepted, and the CUDA build inside (torch's CUDA version, the CUDA
base image's) is consistent. The contract runs themselves happen on CPU when no GPU is here.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from schemas import CONTRACT_VERSION, ModelCard

from .conformance import Check
from .hashing import sha256_file, sha256_json

# Run by the image's own interpreter (Python >= 3.8, standard library, torch when the image has it).
PROBE = """
import glob, json, os, platform
info = {"python": platform.python_version(), "cuda_env": os.environ.get("CUDA_VERSION"),
        "gpus": len(glob.glob("/dev/nvidia[0-9]*"))}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
except ImportError:
    info["torch"] = None
print("GENCSP_PROBE " + json.dumps(info))
"""


def sif_checks(runtime, card: ModelCard) -> list[Check]:
    from . import sif as sifs

    path: Path = runtime.sif(card)
    if not path.is_file():
        return [Check("SIF file", False, f"{path}: missing; run `gencsp sif {card.name}` (or set GENCSP_SIF_DIR)")]
    checks = [file_check(path)]
    try:
        checks.append(format_check(*sifs.layout(runtime.binary, path)))
        labels = sifs.labels(runtime.binary, path)
    except sifs.SifError as exc:
        return [*checks, Check("SIF labels", False, str(exc))]
    checks.append(label_check(labels, card))
    entry = sifs.entry_point(runtime.binary, path)
    checks.append(Check("entry point", bool(entry), " ".join(entry) or "the runscript starts no Docker ENTRYPOINT"))
    return checks + probe_checks(runtime, card, entry, labels)


def file_check(path: Path) -> Check:
    """The sha256 of the file against what was recorded when it was built (images.json, MODEL.sif.sha256)."""
    from .images import records

    digest = sha256_file(path)
    known = {e.get("sif_sha256") for e in records().values() if e.get("sif") == str(path)} - {None}
    beside = path.with_name(path.name + ".sha256")
    if beside.is_file():
        known.add(beside.read_text().split()[0])
    size = f"{path.stat().st_size / 1e6:.0f} MB"
    if not known:
        return Check("SIF file", True, f"sha256 {digest} ({size}); no build record here to compare with")
    same = known == {digest}
    return Check("SIF file", same, f"sha256 {digest} ({size}) " + ("= the one recorded at build" if same else
                                                                   f"!= recorded {', '.join(sorted(known))}"))


def format_check(version: str, partitions: list[str]) -> Check:
    """SIF format 01 with one squashfs system partition: what SingularityCE 3.x reads as well as Apptainer."""
    systems = [p for p in partitions if p.startswith("FS (Squashfs/*System")]
    ok = version == "01" and len(systems) == 1
    return Check("SIF format", ok, f"SIF version {version}, " + (systems[0] if systems else "no squashfs system "
                 "partition") + (" (also read by SingularityCE 3.x)" if ok else ""))


def label_check(labels: dict, card: ModelCard) -> Check:
    """The labels `gencsp build` set: the SIF must be this model, this contract, this upstream commit."""
    problems = []
    if labels.get("gencsp.model") != card.name:
        problems.append(f"gencsp.model is {labels.get('gencsp.model')!r}")
    if str(labels.get("gencsp.contract", "")).split(".")[0] != CONTRACT_VERSION.split(".")[0]:
        problems.append(f"contract {labels.get('gencsp.contract')!r}, orchestrator speaks {CONTRACT_VERSION}")
    if card.upstream and card.upstream.commit and labels.get("gencsp.upstream.commit") != card.upstream.commit:
        problems.append(f"upstream commit {labels.get('gencsp.upstream.commit')!r}, card pins {card.upstream.commit}")
    variant = f", variant {labels['gencsp.variant']}" if labels.get("gencsp.variant") else ""
    # model.yaml may change without the image changing (default options): said, not failed
    older = "" if labels.get("gencsp.card.sha256") == sha256_json(card.model_dump(mode="json")) else \
        "; built from an earlier model.yaml"
    return Check("SIF labels", not problems, "; ".join(problems) or
                 f"model {card.name}, contract {labels['gencsp.contract']}{variant}{older}")


def probe_checks(runtime, card: ModelCard, entry: list[str], labels: dict) -> list[Check]:
    """`--nv` accepted, and the CUDA build inside, by the entry point's interpreter."""
    if not entry or not Path(entry[0]).name.startswith("python"):
        return [Check("GPU flag (--nv)", False, f"entry point {' '.join(entry) or '(none)'} is not a Python "
                                               "interpreter: nothing to probe with")]
    command = runtime.command(card, [entry[0], "-c", PROBE], [], gpu=True, verb="exec")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    found = [line for line in result.stdout.splitlines() if line.startswith("GENCSP_PROBE ")]
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip()[-300:]
        return [Check("GPU flag (--nv)", False, f"{shlex.join(command[:3])} ...: exit {result.returncode}: {tail}")]
    info = json.loads(found[-1].removeprefix("GENCSP_PROBE "))
    gpus = info["gpus"]
    flag = Check("GPU flag (--nv)", True, f"accepted; {gpus} GPU device(s) inside" +
                 ("" if gpus else " (none on this host: the runs above used the CPU)"))
    return [flag, cuda_check(info)]


def cuda_check(info: dict) -> Check:
    """A CUDA base image must carry a CUDA build of torch (a CPU wheel there is a broken variant)."""
    python = f"Python {info['python']}"
    if info.get("torch") is None:
        base = f"; CUDA base {info['cuda_env']}" if info.get("cuda_env") else ""
        return Check("CUDA build", True, f"{python}; no torch in the image (a model without CUDA code){base}")
    if info.get("torch_cuda") is None:
        ok = not info.get("cuda_env")
        return Check("CUDA build", ok, f"{python}; torch {info['torch']} is a CPU build" +
                     ("" if ok else f" on a CUDA {info['cuda_env']} base image: this variant cannot use a GPU"))
    return Check("CUDA build", True, f"{python}; torch {info['torch']} built for CUDA {info['torch_cuda']}"
                 + (f" (base image CUDA {info['cuda_env']})" if info.get("cuda_env") else ""))
