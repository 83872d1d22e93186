"""Fingerprints: the shared-tessellation CrystalNN equals matminer's own, records of bad inputs,
the cache gives the numbers it was given, and the pool gives what one process gives."""

import math

import numpy as np
import pandas as pd
import pytest
from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
from pymatgen.core import Lattice, Structure

from conftest import MIRROR, nacl_cif
from orchestrator.metrics import crystalnn
from orchestrator.metrics.cache import Cache, default_path
from orchestrator.metrics.fingerprints import (
    RecordSettings,
    magpie,
    record_from_cif,
    scale_composition,
    scaler,
    structure_key,
)
from orchestrator.metrics.records import Timing, compute_records, version
from orchestrator.structures import cif_text


def split(name, split_name="test", rows=slice(0, 8)):
    return list(pd.read_csv(MIRROR / name / f"{split_name}.csv", index_col=0)["cif"].iloc[rows])


def plain(structure):
    """matminer's own per-site path, as the reference scripts call it."""
    featurizer = CrystalNNFingerprint.from_preset("ops")
    return np.array([featurizer.featurize(structure, i) for i in range(len(structure))])


ODD_CELLS = {
    "one_site": Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]]),
    "overlapping": Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0]]),
    "sparse": Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),  # per-site fallback
    "chain": Structure(Lattice([[3, 0, 0], [0, 15, 0], [0, 0, 15]]), ["C", "C"], [[0, 0, 0], [0.5, 0, 0]]),
}


@pytest.mark.parametrize("name", ["perov_5", "carbon_24"])
def test_shared_tessellation_equals_matminer(name):
    rows = slice(0, 6) if name == "perov_5" else slice(0, 3)
    for text in split(name, rows=rows):
        structure = Structure.from_str(text, fmt="cif")
        ours, theirs = crystalnn.site_fingerprints(structure), plain(structure)
        assert ours.shape == theirs.shape == (len(structure), 61)
        # a qhull vertex computed from another point set may differ in its last bit
        assert np.abs(ours - theirs).max() <= 1e-12


@pytest.mark.parametrize("name", sorted(ODD_CELLS))
def test_shared_tessellation_equals_matminer_on_odd_cells(name):
    structure = ODD_CELLS[name]
    assert np.array_equal(crystalnn.site_fingerprints(structure), plain(structure))


def test_library_state_is_restored_after_a_fingerprint():
    from pymatgen.core import local_env

    before = local_env.VoronoiNN, local_env.gramschmidt, local_env.np
    crystalnn.site_fingerprints(ODD_CELLS["one_site"])
    assert (local_env.VoronoiNN, local_env.gramschmidt, local_env.np) == before


def test_magpie_without_imputation_and_the_cdvae_scaler():
    means, stds = scaler()
    assert len(means) == len(stds) == len(magpie().feature_labels()) == 132
    assert magpie().impute_nan is False
    raw = np.array(magpie().featurize(Structure.from_str(nacl_cif(), fmt="cif").composition), dtype=float)
    scaled = scale_composition(np.where(np.arange(132) == 5, np.nan, raw))
    assert scaled[5] == 0.0  # NaN -> 0 after scaling
    assert np.allclose(scaled[:5], (raw[:5] - means[:5]) / stds[:5])


def test_structure_key_ignores_the_text_but_not_the_numbers():
    structure = Structure.from_str(nacl_cif(), fmt="cif")
    reparsed = Structure.from_str(cif_text(structure).replace("# generated using pymatgen", "# other"), fmt="cif")
    assert structure_key(structure) == structure_key(reparsed)
    assert structure_key(structure) != structure_key(Structure.from_str(nacl_cif(5.7), fmt="cif"))


BASE = nacl_cif()
BAD = {
    "empty": ("", "empty", "empty"),
    "junk": ("data_x\n_cell_length_a 3\nnot a CIF\n", "parse_error", "parse_error"),
    "nan_coordinate": (BASE.replace("0.00000000  0.00000000  0.00000000", "nan  0.0  0.0"), "parse_error", None),
    "nan_lattice": (BASE.replace("_cell_length_a   3.98808225", "_cell_length_a   nan"), None, "non_finite"),
    "too_dense": (cif_text(Structure(Lattice.cubic(0.3), ["Cu"], [[0, 0, 0]])), None, "too_dense"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_become_records_with_reasons(name):
    text, reason, fp_reason = BAD[name]
    record = record_from_cif(text)
    assert record["reason"] == reason
    assert record["fp_reason"] == (fp_reason or reason)
    assert record["struct_fp"] is None and record["comp_fp"] is None


def test_a_fingerprint_time_limit_makes_the_crystal_invalid_not_the_run():
    record = record_from_cif(split("carbon_24", rows=slice(0, 1))[0], RecordSettings(fingerprint_seconds=1e-4))
    assert record["fp_reason"] == "fingerprint_timeout" and record["comp_fp"] is None
    assert record["reason"] is None and record["formula"] == "C"


def test_odd_but_readable_cells_are_described():
    one = record_from_cif(cif_text(ODD_CELLS["one_site"]))
    assert one["min_dist"] == math.inf and one["fp_reason"] is None and one["smact_valid"]
    close = record_from_cif(cif_text(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])))
    assert close["min_dist"] == pytest.approx(0.2) and close["fp_reason"] is None  # invalid, fingerprinted


@pytest.fixture(scope="module")
def texts():
    return split("perov_5", "val", slice(0, 10)) + ["", "junk"] + split("perov_5", "val", slice(0, 2))


def comparable(records):
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in records]


def test_cached_records_equal_computed_ones_and_workers_do_not_change_them(home, texts):
    settings = RecordSettings()
    uncached = compute_records(texts, settings, workers=1, progress=False)
    cache = Cache(default_path(), version(settings))
    timing = Timing()
    pooled = compute_records(texts, settings, workers=2, cache=cache, progress=False, timing=timing)
    assert timing.computed == 12 and timing.cached == 0  # repeated texts computed once
    timing = Timing()
    cached = compute_records(texts, settings, workers=2, cache=cache, progress=False, timing=timing)
    assert timing.computed == 0 and timing.cached == 12
    assert comparable(uncached) == comparable(pooled) == comparable(cached)
    assert cached[12] is cached[0]  # the same text shares one record


def test_the_same_structure_written_differently_is_computed_once(home, texts):
    settings = RecordSettings()
    cache = Cache(default_path(), version(settings))
    compute_records(texts[:2], settings, workers=1, cache=cache, progress=False)
    rewritten = [t.replace("# generated using pymatgen", "# written by another tool") for t in texts[:2]]
    timing = Timing()
    again = compute_records(rewritten, settings, workers=1, cache=cache, progress=False, timing=timing)
    assert timing.cached == 2 and timing.computed == 0
    assert again[0]["struct_fp"] is not None


def test_records_in_parts_complete_through_the_cache_to_the_full_record(home, texts):
    """Facts first (what CSP reads), then the structure fingerprint of some, then everything: each
    step computes only the missing parts, and the result equals the record computed at once."""
    settings = RecordSettings()
    cache = Cache(default_path(), version(settings))
    facts = compute_records(texts, settings, workers=1, cache=cache, progress=False, parts=())
    assert all(r["struct_fp"] is None and r["spacegroup"] is None for r in facts[:10])
    assert facts[0]["parts"] == [] and facts[10]["reason"] == "empty"
    timing = Timing()
    some = compute_records(texts[:3], settings, workers=2, cache=cache, progress=False, timing=timing,
                           parts=[("struct_fp",), (), ("struct_fp",)])
    assert some[0]["parts"] == ["struct_fp"] and some[0]["comp_fp"] is None and some[1]["parts"] == []
    assert timing.computed == 2 and timing.cached == 1
    full = compute_records(texts, settings, workers=1, cache=cache, progress=False)
    assert comparable(full) == comparable(compute_records(texts, settings, workers=1, progress=False))


def crash_on_three(chunk):
    """A worker function that dies (like a segfault in a C library) on the item 3."""
    import os

    if 3 in chunk:
        os._exit(1)
    return chunk


def test_a_worker_that_dies_costs_one_item_not_the_evaluation():
    from orchestrator.metrics.pool import run_chunks

    results, crashed = [], []
    run_chunks(crash_on_three, [[1, 2], [3, 4], [5], [6, 7]], 2, results.extend, crashed.append)
    assert sorted(results) == [1, 2, 4, 5, 6, 7] and crashed == [3]
