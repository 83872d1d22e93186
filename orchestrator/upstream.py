"""Upstream source archives: GitHub's `OWNER/REPO/archive/COMMIT.tar.gz`, or a mirror with that layout.

A mirror (`GENCSP_UPSTREAM_MIRROR=DIR` or `gencsp build --upstream DIR`) stands in for GitHub where
it cannot be reached: the build is served the mirror's tarball over 127.0.0.1 and its Dockerfile
stays the same. A pin the mirror lacks is an error naming what the mirror has; a tarball whose
`git archive` commit id differs from its name is rejected.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from schemas import ModelCard

from .errors import GencspError
from .hashing import sha256_file

MIRROR_ENV = "GENCSP_UPSTREAM_MIRROR"
GITHUB = "https://github.com"


class UpstreamError(GencspError):
    """An upstream pin cannot be resolved or its archive is not what it claims."""


@dataclass(frozen=True)
class Resolved:
    """One pinned source as a build will fetch it."""

    slug: str  # OWNER/REPO
    commit: str
    arg: str  # the Dockerfile build argument that names the commit
    path: Path | None = None  # the mirror's tarball (None: fetched from GitHub by the build)
    sha256: str | None = None

    @property
    def relpath(self) -> str:
        return archive_relpath(self.slug, self.commit)


def slug(repo: str) -> str:
    """OWNER/REPO from a repository URL (or a slug)."""
    text = repo.strip().rstrip("/").removesuffix(".git")
    for prefix in ("https://github.com/", "http://github.com/", "git@github.com:", "github:"):
        text = text.removeprefix(prefix)
    parts = text.split("/")
    if len(parts) != 2 or not all(parts):
        raise UpstreamError(f"{repo!r} is not a GitHub repository (OWNER/REPO)")
    return text


def archive_relpath(repo_slug: str, commit: str) -> str:
    return f"{repo_slug}/archive/{commit}.tar.gz"


def mirror_dir(explicit: str | Path | None = None) -> Path | None:
    """The mirror to build from: the explicit one, else $GENCSP_UPSTREAM_MIRROR, else None (GitHub)."""
    value = explicit or os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        source = "--upstream" if explicit else MIRROR_ENV
        raise UpstreamError(f"{source}={value}: not a folder (expected OWNER/REPO/archive/COMMIT.tar.gz inside)")
    return path


def mirrored_commits(mirror: Path, repo_slug: str) -> list[str]:
    folder = mirror / repo_slug / "archive"
    return sorted(p.name.removesuffix(".tar.gz") for p in folder.glob("*.tar.gz")) if folder.is_dir() else []


def archive_commit(path: Path) -> str | None:
    """The commit id `git archive` wrote into the tarball's pax header (None when absent)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            tar.next()
            comment = tar.pax_headers.get("comment", "")
    except (OSError, tarfile.TarError) as exc:
        raise UpstreamError(f"{path}: not a readable tarball ({exc})") from exc
    comment = comment.strip()
    return comment if len(comment) == 40 and all(c in "0123456789abcdef" for c in comment) else None


def check_archive(path: Path, commit: str) -> str:
    """sha256 of a mirror tarball after checking that it holds `commit`."""
    found = archive_commit(path)
    if found is not None and not found.startswith(commit):
        raise UpstreamError(f"{path}: the archive holds commit {found}, not {commit}")
    return sha256_file(path)


def sources(card: ModelCard) -> list[tuple[str, str, str]]:
    """(slug, commit, build argument) of every pinned source of a card, main one first."""
    if card.upstream is None:
        return []
    pins = []
    for source in card.upstream.archives():
        arg = source.arg or ("UPSTREAM_COMMIT" if source is card.upstream else None)
        if arg is None:
            raise UpstreamError(f"model {card.name}: {source.repo} needs `arg:` (the build argument of its commit)")
        pins.append((slug(source.repo), source.commit, arg))
    return pins


def resolve(card: ModelCard, mirror: Path | None) -> list[Resolved]:
    """Every pinned source of a card: from the mirror (checked, hashed), or left to the build (GitHub)."""
    resolved = []
    for repo_slug, commit, arg in sources(card):
        if mirror is None:
            resolved.append(Resolved(repo_slug, commit, arg))
            continue
        path = mirror / archive_relpath(repo_slug, commit)
        if not path.is_file():
            have = mirrored_commits(mirror, repo_slug)
            raise UpstreamError(
                f"model {card.name} pins {repo_slug}@{commit}, which the mirror {mirror} does not hold "
                f"(it has {', '.join(have) if have else 'no archive of ' + repo_slug}); "
                "fix the pin in its model.yaml or add the archive to the mirror")
        resolved.append(Resolved(repo_slug, commit, arg, path, check_archive(path, commit)))
    return resolved


def probe(card: ModelCard, resolved: list[Resolved], base: str = GITHUB, timeout: float = 10) -> None:
    """Fail within seconds, before any layer is built, when GitHub cannot serve a pinned archive."""
    import urllib.error
    import urllib.request

    for source in resolved:
        url = f"{base}/{source.relpath}"
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise UpstreamError(f"{source.slug} has no commit {source.commit} ({url} answered 404): fix the pin "
                                    f"in containers/{card.name}/model.yaml") from exc
            raise UpstreamError(unreachable(card.name, url, f"HTTP status {exc.code}")) from exc
        except (OSError, ValueError) as exc:
            raise UpstreamError(unreachable(card.name, url, str(getattr(exc, "reason", exc)))) from exc


def unreachable(model: str, url: str, why: str) -> str:
    """The message of common/fetch_upstream.sh, given before the build starts."""
    return (f"GitHub is unreachable from this build ({url}: {why}).\n"
            f"build gencsp/{model} where github.com is reachable (a workstation or a cluster login node):\n"
            f"  gencsp build {model}   then move it with docker save / docker load, or as a SIF (gencsp sif {model}).\n"
            f"or give a mirror of the archives: gencsp build {model} --upstream DIR ({MIRROR_ENV}).")
