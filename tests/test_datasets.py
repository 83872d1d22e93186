"""Dataset registry, fetching with sha256 checks, mirror, lock file, user datasets, mini."""

import dataclasses
import functools
import http.server
import threading

import pandas as pd
import pytest

from conftest import MIRROR, nacl_cif
from orchestrator import datasets
from orchestrator.cli import main
from orchestrator.datasets import DatasetError
from orchestrator.hashing import sha256_file


def test_registry_has_the_benchmarks_and_mini(home, capsys):
    assert {"mp_20", "perov_5", "carbon_24", "mpts_52", "mini"} <= set(datasets.registry())
    assert main(["data", "list"]) == 0
    printed = capsys.readouterr().out
    for name in ("mp_20", "perov_5", "carbon_24", "mpts_52", "mini"):
        assert name in printed


def test_fetch_from_mirror_verifies_the_pinned_sha(home, capsys):
    assert main(["data", "fetch", "perov_5", "--split", "test"]) == 0
    printed = capsys.readouterr().out.replace("\n", "")
    assert "sha256 verified (pinned)" in printed
    cached = home / "datasets" / "perov_5" / "test.csv"
    assert sha256_file(cached) == datasets.BUILTIN["perov_5"].sha256["test"]
    frame = datasets.load("perov_5", "test")
    assert len(frame) == 3785 and {"material_id", "cif", "heat_ref"} <= set(frame.columns)


def test_corrupt_mirror_file_is_refused_and_not_cached(home, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "carbon_24"
    mirror.mkdir(parents=True)
    (mirror / "val.csv").write_bytes((MIRROR / "carbon_24" / "val.csv").read_bytes()[:-10])
    monkeypatch.setenv("GENCSP_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DatasetError, match="does not match the pinned value 36c00689"):
        datasets.fetch("carbon_24", "val")
    assert not (home / "datasets" / "carbon_24" / "val.csv").exists()


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on localhost serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def unpinned(monkeypatch, server):
    """A registry entry with no pinned hashes, downloaded from the local server."""
    root, url = server
    spec = dataclasses.replace(datasets.BUILTIN["mpts_52"], name="tiny", url=url + "/{name}/{split}.csv", sha256={})
    monkeypatch.setitem(datasets.BUILTIN, "tiny", spec)
    (root / "tiny").mkdir()
    return root / "tiny"


def test_download_records_the_hash_then_enforces_it(home, unpinned, monkeypatch):
    monkeypatch.delenv("GENCSP_DATA_MIRROR")
    frame = pd.DataFrame({"material_id": ["a"], "cif": [nacl_cif()]})
    frame.to_csv(unpinned / "test.csv")
    path = datasets.fetch("tiny", "test", progress=False)
    lock = datasets.read_lock()["tiny/test"]
    assert lock["sha256"] == sha256_file(path) and lock["source"].startswith("http://127.0.0.1")
    # the upstream file changes: the lock file catches it
    path.unlink()
    frame.assign(material_id=["b"]).to_csv(unpinned / "test.csv")
    with pytest.raises(DatasetError, match="does not match the lock file"):
        datasets.fetch("tiny", "test", progress=False)
    assert not path.exists()


def test_lfs_pointer_and_unreachable_server(home, unpinned, monkeypatch):
    monkeypatch.delenv("GENCSP_DATA_MIRROR")
    (unpinned / "val.csv").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    with pytest.raises(DatasetError, match="Git LFS pointer"):
        datasets.fetch("tiny", "val", progress=False)
    with pytest.raises(DatasetError, match="cannot download .*train.csv"):
        datasets.fetch("tiny", "train", progress=False)  # 404
    with pytest.raises(DatasetError, match="has no split 'dev'"):
        datasets.fetch("tiny", "dev")


def test_mini_needs_no_network(home, monkeypatch):
    monkeypatch.delenv("GENCSP_DATA_MIRROR")
    monkeypatch.setattr(datasets, "download", lambda *a, **k: pytest.fail("mini must not download"))
    frames = {split: datasets.load("mini", split) for split in ("train", "val", "test")}
    assert [len(f) for f in frames.values()] == [14, 6, 6]
    ids = pd.concat(frames.values())["material_id"]
    assert ids.is_unique
    from orchestrator.structures import read_structure

    for cif in pd.concat(frames.values())["cif"]:
        assert len(read_structure(cif)) >= 2


def test_show_prints_counts_and_space_groups(home, capsys):
    assert main(["data", "show", "mini", "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert "structures" in printed and "221" in printed and "cubic" in printed
    assert main(["data", "show", "mini", "--split", "val", "--json"]) == 0
    assert '"distinct_space_groups"' in capsys.readouterr().out


def test_add_a_folder_of_cifs_and_a_csv(home, tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "nacl.cif").write_text(nacl_cif())
    (folder / "big.cif").write_text(nacl_cif(6.0))
    datasets.add("mine", folder, split="test")
    frame = datasets.load("mine", "test")
    assert sorted(frame["material_id"]) == ["big", "nacl"]
    assert datasets.get("mine").origin == "user"
    csv = tmp_path / "set.csv"
    pd.DataFrame({"cif": [nacl_cif()], "energy": [1.5]}).to_csv(csv, index=False)
    datasets.add("mine", csv, split="train", kind="carbon")
    assert set(datasets.get("mine").splits) == {"test", "train"}
    assert datasets.load("mine", "train")["energy"][0] == 1.5


def test_add_names_the_bad_file(home, tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "good.cif").write_text(nacl_cif())
    (folder / "broken.cif").write_text("data_x\nnot a cif\n")
    with pytest.raises(DatasetError, match=r"broken\.cif: unreadable CIF"):
        datasets.add("mine", folder)
    datasets.add("mine", folder, skip_invalid=True)
    assert list(datasets.load("mine", "test")["material_id"]) == ["good"]
    with pytest.raises(DatasetError, match="built-in dataset"):
        datasets.add("perov_5", folder)
    bad = tmp_path / "nocif.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad)
    with pytest.raises(DatasetError, match="nocif.csv: a CSV dataset needs a 'cif' column"):
        datasets.add("other", bad)
