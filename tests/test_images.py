"""Image builds and SIF export, with the real Docker engine."""

import tarfile

import pytest

from conftest import ROOT
from orchestrator import images, models, paths
from orchestrator.images import ImageError

pytestmark = pytest.mark.docker

CARD = """name: {name}
description: test image
family: baseline
tasks: [csp]
licence: MIT
upstream: {{repo: "https://example.org/x", commit: "abc123"}}
"""


@pytest.fixture
def containers(tmp_path, monkeypatch):
    root = tmp_path / "containers"
    root.mkdir()
    (root / "common").symlink_to(ROOT / "containers" / "common")
    monkeypatch.setattr(paths, "CONTAINERS_DIR", root)
    return root


def model_folder(root, name, dockerfile):
    folder = root / name
    folder.mkdir()
    (folder / "model.yaml").write_text(CARD.format(name=name))
    (folder / "adapter.py").write_text("print('hello')\n")
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def test_context_holds_helper_model_and_ca_bundle(containers, tmp_path, monkeypatch):
    model_folder(containers, "ctx", "FROM scratch\n")
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("PIP_CERT", raising=False)
    context = tmp_path / "context"
    context.mkdir()
    args = images.make_context("ctx", context)
    assert args == {"PIP_CERT": images.CA_IN_IMAGE}
    assert (context / "ca-bundle.crt").read_text() == bundle.read_text()
    assert (context / "common" / "gencsp_helper.py").is_file() and (context / "ctx" / "Dockerfile").is_file()
    labels = images.labels_for(models.get("ctx"))
    assert labels["gencsp.upstream.commit"] == "abc123" and labels["gencsp.contract"] == "1.0"


def test_a_failing_build_names_the_log_and_the_error(home, containers, docker_client):
    model_folder(containers, "broken", "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n"
                                       "RUN echo 'upstream unreachable' && false\n")
    with pytest.raises(ImageError) as info:
        images.build("broken")
    message = str(info.value)
    assert "building gencsp/broken failed" in message and "upstream unreachable" in message
    assert str(home / "images" / "broken.build.log") in message


@pytest.fixture
def tiny_image(home, containers, docker_client):
    model_folder(containers, "tiny", "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n"
                                     "COPY common/gencsp_helper.py tiny/adapter.py /opt/gencsp/\n")
    entry = images.build("tiny")
    yield entry
    docker_client.images.remove("gencsp/tiny", force=True)


def test_build_records_digest_and_labels(tiny_image, docker_client):
    image = docker_client.images.get("gencsp/tiny")
    assert tiny_image["id"] == image.id == images.image_id("tiny")
    assert image.labels["gencsp.model"] == "tiny" and image.labels["gencsp.upstream.repo"] == "https://example.org/x"
    assert images.records()["tiny"]["id"] == image.id


def test_sif_without_apptainer_writes_the_archive_and_the_command(tiny_image, tmp_path, monkeypatch, capsys):
    from orchestrator import sif
    from orchestrator.cli import main

    monkeypatch.setattr(sif, "find_binary", lambda: None)
    assert main(["sif", "tiny", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    assert f"apptainer build --force {tmp_path}/tiny.sif docker-archive:{tmp_path}/tiny.tar" in printed
    with tarfile.open(tmp_path / "tiny.tar") as archive:
        assert "manifest.json" in archive.getnames()
    assert images.records()["tiny"]["sif_built"] is False


def test_a_failed_sif_build_names_its_log_and_leaves_no_sif(tiny_image, tmp_path, monkeypatch):
    from orchestrator import sif

    binary = tmp_path / "apptainer"
    binary.write_text('#!/bin/sh\n[ "$1" = build ] && printf half > "$3" && echo "FATAL: no space left" && exit 255\n')
    binary.chmod(0o755)
    monkeypatch.setattr(sif, "find_binary", lambda: str(binary))
    with pytest.raises(sif.SifError) as info:
        sif.export_sif("tiny", tmp_path)
    assert "exit 255" in str(info.value) and "FATAL: no space left" in str(info.value)
    assert str(tmp_path / "tiny.sif.log") in str(info.value)
    assert not (tmp_path / "tiny.sif").exists() and not list(tmp_path.glob(".tiny.sif.tmp*"))
