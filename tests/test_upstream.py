"""Upstream pins: every model's pin is in the mirror of ../shared/upstream, one source of truth for it,
and the fetch step records what it fetched (and says when a commit does not exist)."""

from __future__ import annotations

import functools
import hashlib
import io
import re
import subprocess
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ROOT, SHARED
from orchestrator import models, upstream
from orchestrator.upstream import UpstreamError

UPSTREAM_MIRROR = SHARED / "upstream"
FETCH = ROOT / "containers" / "common" / "fetch_upstream.sh"
WITH_ARCHIVES = [name for name, card in models.cards().items() if card.upstream and card.upstream.archives()]


def git_archive(path, repo: str, commit: str, files: dict[str, str]) -> str:
    """A tarball laid out as `git archive` writes it (pax comment = commit id); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{repo.split('/')[1]}-{commit}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def need_mirror():
    if not UPSTREAM_MIRROR.is_dir():
        pytest.skip(f"no upstream mirror at {UPSTREAM_MIRROR}")


def test_the_seed_models_fetch_archives():
    assert {"cdvae", "score_langevin", "gan", "wyckoff_diffusion"} <= set(WITH_ARCHIVES)


@pytest.mark.parametrize("model", WITH_ARCHIVES)
def test_every_pin_is_in_the_mirror_and_holds_that_commit(model):
    need_mirror()
    resolved = upstream.resolve(models.get(model), UPSTREAM_MIRROR)
    assert resolved and all(r.path.is_file() and len(r.sha256) == 64 for r in resolved)
    readme = (UPSTREAM_MIRROR / "README.md").read_text()
    for source in resolved:  # the sha256 the mirror's README publishes
        assert source.sha256 in readme, source.slug


@pytest.mark.parametrize("model", WITH_ARCHIVES)
def test_the_dockerfile_defaults_are_the_card_pins(model):
    """A plain `docker build` elsewhere fetches what the card says (gencsp passes the card's pins)."""
    dockerfile = (ROOT / "containers" / model / "Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S*)$", dockerfile, re.M))
    for _slug, commit, arg in upstream.sources(models.get(model)):
        assert defaults.get(arg) == commit, f"{model}: ARG {arg} in the Dockerfile"
        assert f"${{{arg}}}" in dockerfile or f"${arg}" in dockerfile


def test_a_pin_the_mirror_lacks_names_what_it_has(tmp_path):
    """The pin shipped for WyckoffDiff before (0aeac177…) does not exist upstream: the mirror says so."""
    need_mirror()
    card = models.get("wyckoff_diffusion")
    wrong = card.model_copy(update={"upstream": card.upstream.model_copy(
        update={"commit": "0aeac177e178bb32106b71b2a660087e40c18d57"})})
    with pytest.raises(UpstreamError) as info:
        upstream.resolve(wrong, UPSTREAM_MIRROR)
    message = str(info.value)
    assert "httk/wyckoffdiff@0aeac177e178bb32106b71b2a660087e40c18d57" in message
    assert "dc5e84983117ebcb5e6e27b429662bd06cf3234f" in message and "model.yaml" in message


def test_an_archive_holding_another_commit_is_rejected(tmp_path):
    path = tmp_path / "owner" / "repo" / "archive" / ("a" * 40 + ".tar.gz")
    git_archive(path, "owner/repo", "b" * 40, {"x.py": "print(1)\n"})
    with pytest.raises(UpstreamError, match="holds commit b+, not a+"):
        upstream.check_archive(path, "a" * 40)
    assert upstream.archive_commit(path) == "b" * 40


def test_mirror_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(upstream.MIRROR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UpstreamError, match="GENCSP_UPSTREAM_MIRROR=.*not a folder"):
        upstream.mirror_dir()
    monkeypatch.setenv(upstream.MIRROR_ENV, str(tmp_path))
    assert upstream.mirror_dir() == tmp_path.resolve()
    assert upstream.mirror_dir(tmp_path / ".") == tmp_path.resolve()
    monkeypatch.delenv(upstream.MIRROR_ENV)
    assert upstream.mirror_dir() is None


@pytest.mark.parametrize("text", ["https://github.com/txie-93/cdvae", "https://github.com/txie-93/cdvae.git",
                                  "git@github.com:txie-93/cdvae.git", "txie-93/cdvae"])
def test_slug(text):
    assert upstream.slug(text) == "txie-93/cdvae"


@pytest.fixture
def served(tmp_path):
    """A local HTTP server standing in for GitHub's archive URLs."""
    root = tmp_path / "site"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def fetch(url: str, tmp_path, commit: str):
    env = {"PATH": "/usr/bin:/bin", "GITHUB": url, "GENCSP_RECORD_DIR": str(tmp_path / "record"),
           "TMPDIR": str(tmp_path)}
    return subprocess.run(["sh", str(FETCH), "toy", "owner/repo", commit, str(tmp_path / "dest")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_fetch_records_the_commit_and_sha256_of_what_it_extracted(served, tmp_path):
    root, url = served
    commit = "c" * 40
    sha = git_archive(root / "owner" / "repo" / "archive" / f"{commit}.tar.gz", "owner/repo", commit,
                      {"main.py": "print('upstream')\n"})
    proc = fetch(url, tmp_path, commit)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dest" / "main.py").read_text() == "print('upstream')\n"
    assert (tmp_path / "record" / "upstream.tsv").read_text() == f"owner/repo\t{commit}\t{sha}\n"
    assert not list(tmp_path.glob("upstream.*"))  # the downloaded archive is removed


def test_fetch_of_a_commit_that_does_not_exist_says_so(served, tmp_path):
    _, url = served
    proc = fetch(url, tmp_path, "d" * 40)
    assert proc.returncode == 1
    assert f"owner/repo has no commit {'d' * 40}" in proc.stderr and "answered 404" in proc.stderr
    assert "containers/toy/model.yaml" in proc.stderr and "unreachable" not in proc.stderr
    assert not (tmp_path / "record" / "upstream.tsv").exists()


def test_without_a_mirror_an_unreachable_github_stops_the_build_within_seconds():
    import time

    card = models.get("cdvae")
    start = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        upstream.probe(card, upstream.resolve(card, None), base="http://127.0.0.1:9")  # a closed port
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert "GitHub is unreachable" in message and "gencsp build cdvae" in message and "--upstream DIR" in message
    assert "txie-93/cdvae/archive/f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea.tar.gz" in message


def test_without_a_mirror_a_pin_github_lacks_is_named(served):
    _, url = served  # serves nothing: every archive answers 404
    card = models.get("gan")
    with pytest.raises(UpstreamError, match="MilesZhao/PGCGM has no commit ab38ec6e.*answered 404"):
        upstream.probe(card, upstream.resolve(card, None), base=url)
