"""Shared fixtures. Tests read the mirrored benchmark splits from ../shared/datasets."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GENCSP_SHARED", ROOT.parent / "shared"))
MIRROR = SHARED / "datasets"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private gencsp cache; the mirror is used before the network."""
    path = tmp_path / "home"
    monkeypatch.setenv("GENCSP_HOME", str(path))
    monkeypatch.setenv("GENCSP_DATA_MIRROR", str(MIRROR))
    monkeypatch.setenv("GENCSP_RUNS", str(tmp_path / "runs"))
    return path


def nacl_cif(a: float = 5.64) -> str:
    from pymatgen.core import Lattice, Structure

    from orchestrator.structures import cif_text

    structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return cif_text(structure.get_primitive_structure())


@contextlib.contextmanager
def module_home(tmp_path_factory, name: str):
    """For a module-scoped fixture: a private gencsp home, runs folder and the mirror; yields (root, patch)."""
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENCSP_HOME", str(root / "home"))
        patch.setenv("GENCSP_DATA_MIRROR", str(MIRROR))
        patch.setenv("GENCSP_RUNS", str(root / "runs"))
        yield root, patch


def slow_cif(sites: int = 40, blocks: int = 2) -> str:
    """Blocks of `sites` general positions in F m -3 m: each takes pymatgen seconds to expand and merge."""
    import random

    from pymatgen.symmetry.groups import SpaceGroup

    ops = [f"  '{op.as_xyz_str()}'" for op in SpaceGroup("Fm-3m").symmetry_ops]
    text = ""
    for block in range(blocks):
        rng = random.Random(block)
        lines = [f"data_b{block}", "_symmetry_space_group_name_H-M 'F m -3 m'",
                 *(f"_cell_length_{x} 30" for x in "abc"), *(f"_cell_angle_{x} 90" for x in ("alpha", "beta", "gamma")),
                 "loop_", "_symmetry_equiv_pos_as_xyz", *ops, "loop_", "_atom_site_label", "_atom_site_type_symbol",
                 "_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"]
        lines += [f"  C{i} C {rng.random():.5f} {rng.random():.5f} {rng.random():.5f} 1" for i in range(sites)]
        text += "\n".join(lines) + "\n"
    return text


@pytest.fixture
def cif():
    return nacl_cif()


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing here; in CI (GENCSP_CI=1) a missing service is a failure."""
    if condition:
        return
    if os.environ.get("GENCSP_CI") == "1":
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    from orchestrator import images

    need(images.daemon_available(), "no Docker daemon answers")
    return images.client()


@pytest.fixture(scope="session")
def baseline_images(docker_client):
    """The two CPU baseline images, built by .ci/run (or `gencsp build`)."""
    from orchestrator import images

    for name in ("gencsp/random_search", "gencsp/replay"):
        need(images.image_exists(docker_client, name), f"{name} is not built (gencsp build {name.split('/')[1]})")
    return docker_client
