"""Image builds and SIF export, with the real Docker engine."""

import hashlib
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
    from orchestrator.cli import main

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(images, "apptainer_binary", lambda: None)
    assert main(["sif", "tiny", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    assert f"apptainer build --force {tmp_path}/tiny.sif docker-archive:{tmp_path}/tiny.tar" in printed
    with tarfile.open(tmp_path / "tiny.tar") as archive:
        assert "manifest.json" in archive.getnames()
    assert images.records()["tiny"]["sif_built"] is False


def test_sif_with_apptainer_records_its_sha256(tiny_image, tmp_path, monkeypatch):
    binary = tmp_path / "apptainer"
    binary.write_text('#!/bin/sh\n[ "$1" = build ] && printf SIF > "$3"\n')
    binary.chmod(0o755)
    monkeypatch.setattr(images, "apptainer_binary", lambda: str(binary))
    entry = images.export_sif("tiny", tmp_path)
    assert entry["sif_built"] and entry["sif_sha256"] == hashlib.sha256(b"SIF").hexdigest()


MIRRORED_CARD = """name: mirrored
description: test image fetching an upstream archive
family: baseline
tasks: [csp]
licence: MIT
upstream: {{repo: "https://github.com/owner/repo", commit: "{commit}"}}
variants:
  cpu: {{description: plain, device: cpu, build_args: {{FLAVOUR: plain}}}}
"""
MIRRORED_DOCKERFILE = """ARG BASE_IMAGE=debian:bookworm-slim
FROM ${{BASE_IMAGE}}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
ARG WHEELS=
RUN mkdir -p /opt/gencsp/wheels && echo compiled > /opt/gencsp/wheels/built-1.0-py3-none-any.whl \\
    && curl -fsS "$WHEELS" > /opt/gencsp/served.html
ARG FLAVOUR=none
RUN echo "$FLAVOUR" > /opt/gencsp/flavour
ARG UPSTREAM_COMMIT={commit}
ARG GITHUB=https://github.com
COPY common/fetch_upstream.sh /usr/local/bin/gencsp-fetch-upstream
RUN gencsp-fetch-upstream mirrored owner/repo "${{UPSTREAM_COMMIT}}" /opt/upstream
"""


def test_a_variant_built_from_a_mirror_is_labelled_with_what_it_fetched(home, containers, docker_client, tmp_path,
                                                                          monkeypatch):
    from test_upstream import git_archive

    commit = "e" * 40
    mirror = tmp_path / "mirror"
    sha = git_archive(mirror / "owner" / "repo" / "archive" / f"{commit}.tar.gz", "owner/repo", commit,
                      {"README": "upstream tree\n"})
    host_wheels = tmp_path / "host-wheels"
    host_wheels.mkdir()
    (host_wheels / "hostonly-2.0-py3-none-any.whl").write_bytes(b"wheel")
    monkeypatch.setenv("PIP_FIND_LINKS", str(host_wheels))
    folder = model_folder(containers, "mirrored", MIRRORED_DOCKERFILE.format(commit=commit))
    (folder / "model.yaml").write_text(MIRRORED_CARD.format(commit=commit))
    try:
        entry = images.build("mirrored", variant="cpu", upstream_mirror=mirror)
        image = docker_client.images.get("gencsp/mirrored:cpu")
        labels = image.labels
        assert labels["gencsp.upstream.commit"] == commit and labels["gencsp.upstream.sha256"] == sha
        assert labels["gencsp.upstream.source"] == f"mirror {mirror}" and labels["gencsp.variant"] == "cpu"
        assert entry["id"] == image.id and images.records()["mirrored:cpu"]["labels"]["gencsp.upstream.sha256"] == sha
        files = images.read_from_image(docker_client, "gencsp/mirrored:cpu", "/opt/gencsp")
        assert files["flavour"] == b"plain\n" and files["upstream.tsv"] == f"owner/repo\t{commit}\t{sha}\n".encode()
        assert b"hostonly-2.0-py3-none-any.whl" in files["served.html"]  # the host's local wheels are served
        house = home / "wheelhouse" / "mirrored-cpu"
        assert entry["wheels_compiled"] == ["built-1.0-py3-none-any.whl"]
        assert (house / "built-1.0-py3-none-any.whl").read_bytes() == b"compiled\n"
        again = images.build("mirrored", variant="cpu", upstream_mirror=mirror, nocache=True)
        assert again["wheels_compiled"] == []  # already kept
        served = images.read_from_image(docker_client, "gencsp/mirrored:cpu", "/opt/gencsp")["served.html"]
        assert b"built-1.0-py3-none-any.whl" in served  # what the first build compiled is offered to the next
    finally:
        for tag in ("gencsp/mirrored:cpu",):
            if images.image_exists(docker_client, tag):
                docker_client.images.remove(tag, force=True)


def test_a_mirror_without_the_pin_stops_before_building(home, containers, docker_client, tmp_path):
    folder = model_folder(containers, "mirrored", MIRRORED_DOCKERFILE.format(commit="f" * 40))
    (folder / "model.yaml").write_text(MIRRORED_CARD.format(commit="f" * 40))
    (tmp_path / "mirror").mkdir()
    from orchestrator.upstream import UpstreamError

    with pytest.raises(UpstreamError, match="owner/repo@f{40}, which the mirror .* does not hold"):
        images.build("mirrored", variant="cpu", upstream_mirror=tmp_path / "mirror")
    assert not images.image_exists(docker_client, "gencsp/mirrored:cpu")
