"""`gencsp data dedup`: duplicates within a split and across splits, polymorphs apart, a recorded
mapping reused while its inputs are unchanged."""

import json

import pandas as pd
import pytest
from pymatgen.core import Structure

from conftest import MIRROR
from orchestrator.cli import main
from orchestrator.dedup import group
from orchestrator.structures import cif_text


@pytest.fixture(scope="module")
def cifs():
    """a; a shifted and its sites reordered (a duplicate); a 2x supercell of a (a duplicate after
    primitive reduction); p1, p2: two polymorphs of one formula; p1 shifted; c: another composition."""
    frame = pd.read_csv(MIRROR / "perov_5" / "test.csv", index_col=0).head(400)
    # the split's own `formula` column orders elements by site: the reduced composition is what polymorphs share
    frame["formula"] = [Structure.from_str(c, fmt="cif").composition.reduced_formula for c in frame["cif"]]
    counts = frame["formula"].value_counts()
    p1, p2 = frame[frame["formula"] == counts[counts >= 2].index[0]]["cif"].head(2)
    singles = frame[frame["formula"].map(counts) == 1]["cif"]
    a, c = singles.iloc[0], singles.iloc[1]

    def shifted(text, reverse=True):
        structure = Structure.from_str(text, fmt="cif")
        structure.translate_sites(list(range(len(structure))), [0.13, 0.27, 0.41])
        return cif_text(Structure.from_sites(structure.sites[::-1] if reverse else structure.sites))

    supercell = Structure.from_str(a, fmt="cif")
    supercell.make_supercell([2, 1, 1])
    return {"a": a, "a_shift": shifted(a), "a_super": cif_text(supercell), "p1": p1, "p2": p2,
            "p1_shift": shifted(p1, reverse=False), "c": c}


def test_groups_follow_split_order_and_other_sets_match_representatives(cifs):
    found = group([cifs[k] for k in ("a", "p1", "a_shift", "p2", "c", "p1_shift")], workers=1, progress=False)
    assert found.labels == [0, 1, 0, 3, 4, 1]
    across = group([cifs[k] for k in ("a", "p1", "p2", "c")], others=[cifs["p1_shift"], cifs["a_super"]],
                   workers=1, progress=False, distinct=True)
    assert across.labels == [0, 1, 2, 3] and across.also_in == {0: 1, 1: 0}
    assert group(["not a cif", cifs["c"]], workers=1, progress=False).labels == [None, 1]


def _add(tmp_path, split, names, cifs):
    path = tmp_path / f"{split}.csv"
    pd.DataFrame({"material_id": [f"{split}-{n}" for n in names], "cif": [cifs[n] for n in names]}).to_csv(
        path, index=False)
    assert main(["data", "add", "dups", str(path), "--split", split, "--kind", "perovskite"]) == 0


def test_dedup_command_records_counts_groups_and_matches_across_splits(home, tmp_path, cifs, capsys):
    _add(tmp_path, "test", ["a", "a_shift", "p1", "p2", "c"], cifs)
    _add(tmp_path, "val", ["a_super", "p1_shift"], cifs)
    capsys.readouterr()
    assert main(["data", "dedup", "dups", "--split", "test", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "duplicates of an earlier structure" in printed and "computed" in printed
    path = home / "dedup" / "dups" / "test.strict.json"
    mapping = json.loads(path.read_text())
    assert mapping["counts"] | {"duplicate_fraction": None, "unique_fraction": None} == {
        "structures": 5, "unreadable": 0, "unique": 4, "duplicates": 1, "duplicate_fraction": None,
        "unique_fraction": None, "groups_with_duplicates": 1, "largest_group": 2, "formulas": 3,
        "unique_with_polymorph": 2}
    assert mapping["counts"]["duplicate_fraction"] == pytest.approx(0.2)
    assert mapping["groups"] == [["test-a", "test-a_shift"]]
    across = mapping["across"]["val"]
    assert across["matches"] == {"test-a": "val-a_super", "test-p1": "val-p1_shift"}
    assert across["structures_also_there"] == 3 and across["fraction_also_there"] == pytest.approx(0.6)
    assert across["unique_with_polymorph_there"] == 1  # p2: only its polymorph p1 is in val
    assert mapping["inputs"]["tolerance"] == {"name": "strict", "stol": 0.3, "angle_tol": 5, "ltol": 0.2}
    assert set(mapping["inputs"]["sha256"]) == {"test", "val"} and set(mapping["seconds"]) >= {"within", "val"}

    stamp = path.stat().st_mtime_ns
    assert main(["data", "dedup", "dups", "--split", "test"]) == 0
    assert "recorded mapping (current, not recomputed)" in capsys.readouterr().out
    assert path.stat().st_mtime_ns == stamp
    assert main(["data", "dedup", "dups", "--split", "test", "--tolerance", "loose", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["structures"] == 5
    assert (home / "dedup" / "dups" / "test.loose.json").is_file()

    _add(tmp_path, "val", ["p1_shift", "c"], cifs)  # another val file: the mapping is made again
    assert main(["data", "dedup", "dups", "--split", "test"]) == 0
    mapping = json.loads(path.read_text())
    assert mapping["across"]["val"]["matches"] == {"test-p1": "val-p1_shift", "test-c": "val-c"}


def test_dedup_names_a_missing_split(home, capsys):
    assert main(["data", "dedup", "perov_5", "--split", "train2"]) == 1
    assert "no split 'train2'" in capsys.readouterr().err
