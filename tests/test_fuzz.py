"""Property-based fuzzing of what a hostile model can write, with hypothesis.

Generated: manifests (valid, broken, deeply nested, symlinked, absent), records (unknown
and huge sample indices, NUL bytes and lone surrogates in ids and paths, 300-character
names, duplicates, records breaking the schema, Wyckoff descriptions with made-up
elements), file trees (CIFs, mutated CIFs, binary files, folders and FIFOs named *.cif,
symlinks inside, outside, dangling and looping) and CIF texts (numbers replaced by NaN,
inf, huge or negative values, lines dropped or repeated, elements renamed, truncation).

Invariants:
1. `gencsp validate` and `validate_shard` never raise anything but ManifestError (exit 1);
   the executor (`run_shards`) never raises.
2. Every requested sample ends as exactly one row, in the shard table and the run table.
3. Nothing outside the output folder is read: no file outside the shard is opened while
   validating, and the decoy file beside it never reaches a row.
4. The run stays resumable: `gencsp status` and `gencsp resume` succeed after any of it,
   and the run table still has one row per requested sample.

Bounded for CI: derandomized (the same cases on every run), FUZZ_EXAMPLES scales the
counts (e.g. FUZZ_EXAMPLES=10 for a longer local hunt).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile
from conftest import MIRROR, nacl_cif
from orchestrator.cli import main
from orchestrator.validate import ManifestError, validate_shard
from schemas import SampleRequest, Target

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))


def fuzz(n: int):
    """Derandomized (the same cases in every CI run), no example database, no deadline."""
    return settings(derandomize=True, database=None, deadline=None, print_blob=True,
                    suppress_health_check=list(HealthCheck), max_examples=max(1, int(n * SCALE)))
DECOY = "DECOY-OUTSIDE-THE-OUTPUT-FOLDER"
IDS = ["a", "b", "c"]
MINI = ["mini-00-SrTiO3", "mini-01-CsCl", "mini-02-Li2O", "mini-03-Si", "mini-04-VO2", "mini-05-BaTiO3"]
BASE = nacl_cif()
HOSTILE_TEXT = st.sampled_from(["\x00", "\ud800", "\udc80", "x" * 300, "..", "/", "../../etc", "é", "\n", ""])


# --- strategies ---------------------------------------------------------------------------

@st.composite
def cif_texts(draw) -> str:
    """A CIF that starts valid and may be broken in any of the ways a model breaks one."""
    lines = BASE.splitlines()
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(["number", "drop", "repeat", "element", "junk", "truncate"]))
        k = draw(st.integers(0, len(lines) - 1))
        if mutation == "number":
            value = draw(st.sampled_from(["nan", "inf", "-inf", "0", "-3.9", "1e308", "1e-30", "?", ".", "1.0(3)"]))
            words = lines[k].split()
            if words:
                words[draw(st.integers(0, len(words) - 1))] = value
                lines[k] = " ".join(words)
        elif mutation == "drop":
            del lines[k]
        elif mutation == "repeat":
            lines.insert(k, lines[k])
        elif mutation == "element":
            lines = [line.replace("Cl", draw(st.sampled_from(["Xx", "X", "D", "Cl2", "", "Uuo", "Og"])))
                     for line in lines]
        elif mutation == "junk":
            lines.insert(k, draw(st.text(max_size=40)))
        else:
            lines = lines[:k]
        if not lines:
            break
    text = "\n".join(lines) + "\n"
    return text * draw(st.sampled_from([1, 1, 1, 2]))  # two data blocks now and then


@st.composite
def entries(draw) -> list[dict]:
    """Files, folders, FIFOs and symlinks under the output folder."""
    tree = []
    for k in range(draw(st.integers(0, 5))):
        path = f"structures/s{k}.cif"
        kind = draw(st.sampled_from(["cif", "cif", "cif", "bytes", "dir", "fifo", "link_in", "link_out",
                                     "link_dangling", "link_loop", "empty"]))
        if kind == "cif":
            tree.append(hostile.file(path, draw(cif_texts())))
        elif kind == "bytes":
            tree.append(hostile.file(path, draw(st.binary(max_size=200))))
        elif kind == "empty":
            tree.append(hostile.file(path, b""))
        elif kind in ("dir", "fifo"):
            tree.append({"kind": kind, "path": path})
        elif kind == "link_in":
            tree += [hostile.file("structures/real.cif", BASE), {"kind": "symlink", "path": path, "to": "real.cif"}]
        elif kind == "link_out":
            tree.append({"kind": "symlink", "path": path, "to": "../../../decoy.cif"})
        elif kind == "link_dangling":
            tree.append({"kind": "symlink", "path": path, "to": "nowhere.cif"})
        else:
            tree.append({"kind": "symlink", "path": path, "to": f"s{k}.cif"})
    return tree


def cif_paths(k_files: int):
    named = [f"structures/s{k}.cif" for k in range(k_files)] + ["structures/real.cif"]
    made_up = st.one_of(HOSTILE_TEXT.map(lambda t: f"structures/{t}.cif"),
                        st.sampled_from(["../decoy.cif", "../../../decoy.cif", "/etc/passwd", "structures",
                                         "manifest.json", "structures/../../decoy.cif"]),
                        st.text(max_size=20))
    return st.one_of(st.sampled_from(named), made_up)


@st.composite
def records(draw, tree_size: int, ids: list[str]) -> list:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        target = draw(st.one_of(st.sampled_from(ids), HOSTILE_TEXT, st.text(max_size=10)))
        index = draw(st.one_of(st.integers(0, 2), st.integers(0, 2), st.sampled_from([10**30, 2**63, -1, 99])))
        record = {"target_id": target, "sample_index": index, "seconds": draw(st.sampled_from([0.5, 0, -1, 1e300]))}
        shape = draw(st.sampled_from(["ok", "ok", "ok", "failed", "wyckoff", "broken", "junk"]))
        if shape == "ok":
            record.update(status="ok", cif=draw(cif_paths(tree_size)))
        elif shape == "failed":
            record.update(status="failed", message=draw(st.one_of(st.text(max_size=30), HOSTILE_TEXT)))
        elif shape == "wyckoff":
            element = draw(st.sampled_from(["Na", "Cl", "Xx", "X", "Og", "D"]))
            letter = draw(st.sampled_from(["a", "b", "z"]))
            record.update(status="ok", wyckoff={"space_group": draw(st.sampled_from([225, 1, 230])),
                                                "sites": [{"element": element, "letter": letter}]})
        elif shape == "broken":
            record.update(status=draw(st.sampled_from(["maybe", None, 3])), cif=draw(st.sampled_from([None, 7, "x"])))
        else:
            record = draw(st.sampled_from([None, 3, "record", [], {"target_id": "a"}]))
        out.append(record)
    return out


@st.composite
def shards(draw, ids: list[str] = IDS) -> list[dict]:
    """The whole output folder: a tree and a manifest (or something in its place)."""
    tree = draw(entries())
    samples = draw(records(len(tree), ids))
    kind = draw(st.sampled_from(["valid"] * 6 + ["incomplete", "none", "not_json", "deep", "schema", "symlink",
                                                 "fifo", "dir", "version"]))
    body = {"contract_version": "1.0", "task": "csp", "seed": 0, "complete": kind != "incomplete",
            "model": {"name": draw(st.one_of(st.just("hostile"), HOSTILE_TEXT))},
            "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"}, "samples": samples}
    if kind in ("valid", "incomplete"):
        tree.append(hostile.file("manifest.json", json.dumps(body)))
    elif kind == "not_json":
        tree.append(hostile.file("manifest.json", draw(st.binary(max_size=50))))
    elif kind == "deep":
        depth = draw(st.sampled_from([100, 5000, 100_000]))
        tree.append(hostile.file("manifest.json", "[" * depth + "]" * depth))
    elif kind == "schema":
        tree.append(hostile.file("manifest.json", json.dumps({**body, "samples": {"a": 1}, "seed": "x"})))
    elif kind == "version":
        tree.append(hostile.file("manifest.json", json.dumps({**body, "contract_version": "9.0"})))
    elif kind == "symlink":
        tree.append({"kind": "symlink", "path": "manifest.json", "to": "../../decoy-manifest.json"})
    elif kind in ("fifo", "dir"):
        tree.append({"kind": kind, "path": "manifest.json"})
    return tree


# --- materialising a tree and watching what is opened ---------------------------------------

def materialise(tree: list[dict], out: Path) -> None:
    """What the hostile adapter does, in this process (for validation-only cases)."""
    import base64

    out.mkdir(parents=True, exist_ok=True)
    for entry in tree:
        path = out / entry["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if entry["kind"] == "file":
                path.write_bytes(base64.b64decode(entry["data"]))
            elif entry["kind"] == "dir":
                path.mkdir(exist_ok=True)
            elif entry["kind"] == "symlink":
                os.symlink(entry["to"], path)
            elif entry["kind"] == "fifo":
                os.mkfifo(path)


def decoys(root: Path) -> None:
    """Files a model could point at outside its output folder."""
    for name in ("decoy.cif", "decoy-manifest.json"):
        (root / name).write_text(BASE.replace("data_", f"data_{DECOY}_"))
    for parent in (root.parent, root.parent.parent):
        with contextlib.suppress(OSError):
            (parent / "decoy.cif").write_text(BASE.replace("data_", f"data_{DECOY}_"))


class Opened:
    """Paths opened by this process while `watching` (an audit hook, installed once)."""

    paths: list[str] | None = None

    @classmethod
    def hook(cls, event, args):
        if event == "open" and cls.paths is not None and args and isinstance(args[0], str | bytes):
            cls.paths.append(os.fsdecode(args[0]))

    @classmethod
    @contextlib.contextmanager
    def watching(cls):
        cls.paths = []
        try:
            yield cls.paths
        finally:
            cls.paths = None


sys.addaudithook(Opened.hook)
ALLOWED = (sys.prefix, sys.base_prefix, "/proc/", "/dev/", "/sys/", "/usr/", "/etc/localtime")


def outside(opened: list[str], inside: Path) -> list[str]:
    root = os.path.realpath(inside)
    return [p for p in opened if not os.path.realpath(p).startswith((root, *ALLOWED))]


def request(samples: int = 1) -> SampleRequest:
    return SampleRequest(task="csp", targets=[Target(id=i, composition={"Na": 1, "Cl": 1}, samples=samples)
                                              for i in IDS])


# --- invariants -------------------------------------------------------------------------------

@fuzz(150)
@given(tree=shards(), samples=st.integers(1, 2))
def test_validation_never_raises_keeps_every_requested_sample_and_reads_nothing_outside(tree, samples):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shard"
        out = root / "out"
        materialise(tree, out)
        decoys(root)
        req = request(samples)
        (root / "request.json").write_text(req.model_dump_json())
        with Opened.watching() as opened:
            try:
                report = validate_shard(out, req)
            except ManifestError as exc:
                assert str(out / "manifest.json") in str(exc)
                report = None
        assert not outside(opened, root), outside(opened, root)
        if report is not None:
            assert [(r["target_id"], r["sample_index"]) for r in report.rows] == req.requested()
            frame = report.frame()
            assert set(frame["status"]) <= {"accepted", "rejected"} and frame.loc[
                frame["status"] == "rejected", "reason"].notna().all()
            assert not frame["cif"].fillna("").str.contains(DECOY).any()
            assert "\ud800" not in json.dumps(report.warnings, ensure_ascii=False).encode("utf-8", "replace").decode()
        # the command: the same outcome as exit code 0 or 1, never a traceback
        code = main(["validate", str(out), "--table", str(root / "table.parquet"), "--parse-seconds", "5"])
        assert code == (1 if report is None else 0)
        if report is not None:
            assert len(pd.read_parquet(root / "table.parquet")) == len(req.requested())


@pytest.fixture(scope="module")
def template_run(tmp_path_factory):
    """A planned run of the hostile model on mini (two shards of three targets), copied for every case."""
    from conftest import module_home
    from orchestrator.plan import plan
    from orchestrator.runs import RunConfig
    from schemas import Task

    assert MIRROR.is_dir()
    with module_home(tmp_path_factory, "fuzz") as (root, _):
        hostile.install(root / "containers")
        config = RunConfig(model="hostile", dataset="mini", split="test", task=Task.csp, shard_size=3)
        run, _ = plan(config, hostile.card(), root / "runs")
        yield root, run.path


def copy_run(template: Path, where: Path, tree: list[dict]):
    """The template run with every shard's request asking the hostile model for `tree`."""
    import shutil

    from orchestrator.atomic import write_text
    from orchestrator.runs import Run

    path = where / template.name
    shutil.copytree(template, path, symlinks=True)
    run = Run(path)
    for shard in run.shards():
        request = shard.request()
        request.options["tree"] = tree
        write_text(shard.request_path, request.model_dump_json(exclude_none=True))
    return run


@fuzz(30)
@given(tree=shards(MINI))
def test_the_executor_never_raises_and_the_run_stays_resumable(template_run, tree):
    from orchestrator.atomic import write_json
    from orchestrator.collect import collect
    from orchestrator.executors.local import ShardPolicy, run_shards
    from orchestrator.runs import State
    from orchestrator.runtimes.local import LocalRuntime

    root, template = template_run
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        run = copy_run(template, Path(tmp), tree)
        decoys(run.path / "shards")
        runtime = LocalRuntime(containers=root / "containers")
        with Opened.watching() as opened:
            states = run_shards(run, runtime, hostile.card(), ShardPolicy(retries=0, timeout=60), progress=False)
        assert len(states) == 2 and all(s["status"] in ("done", "failed") for s in states)
        assert not outside(opened, run.path), outside(opened, run.path)
        requested = sorted(k for s in run.shards() for k in s.request().requested())
        frame = collect(run)
        assert sorted(zip(frame["target_id"], frame["sample_index"], strict=True)) == requested
        assert not frame["cif"].fillna("").str.contains(DECOY).any()
        # killed while its first shard ran: status and a resume still work, nothing is lost or doubled
        first = run.shards()[0]
        write_json(first.state_path, {**first.state(), "status": "running"})
        (first.out_dir / "half.cif").write_text(BASE[:40])
        assert main(["status", str(run.path), "--no-queue"]) == 0
        resumed = run_shards(run, runtime, hostile.card(), ShardPolicy(retries=1, timeout=60), progress=False)
        assert 1 <= len(resumed) <= 2 and {s.status for s in run.shards()} <= {State.done, State.failed}
        again = collect(run)
        assert sorted(zip(again["target_id"], again["sample_index"], strict=True)) == requested
