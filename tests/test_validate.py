"""`gencsp validate`: every rejection reason from a real malformed file, and broken manifests."""

import json
import os

import pandas as pd
import pytest

from conftest import nacl_cif, slow_cif
from orchestrator.cli import main
from orchestrator.validate import Limits, ManifestError, validate_shard
from schemas import SampleRequest, Target

BASE = nacl_cif()


def edit(old, new):
    assert old in BASE
    return BASE.replace(old, new)


# reason -> CIF text (None: the file is made by the test itself)
BAD_FILES = {
    "empty": "",
    "parse_error": "data_junk\n_cell_length_a 3\nthis is not a CIF\n",
    "non_finite": edit("_cell_length_a   3.98808225", "_cell_length_a   inf"),
    "bad_lattice": edit("_cell_length_a   3.98808225", "_cell_length_a   -3.98808225"),
    "tiny_volume": BASE.replace("3.98808225", "0.30000000"),  # 0.019 A^3
    "disordered": edit("0.00000000  0.00000000  0.00000000  1", "0.00000000  0.00000000  0.00000000  0.5"),
    "unknown_element": edit("  Cl  Cl_1", "  X  X_1"),
}


def make_shard(tmp_path, records, files):
    """An output folder with `files` (relative path -> text) and a manifest of `records`."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    manifest = {"contract_version": "1.0", "task": "csp", "seed": 0, "model": {"name": "toy"},
                "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"}, "samples": records}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def ok(target, index, cif):
    return {"target_id": target, "sample_index": index, "status": "ok", "cif": cif, "seconds": 0.5}


def request_for(records, samples=1):
    ids = sorted({r["target_id"] for r in records})
    return SampleRequest(task="csp", targets=[Target(id=i, composition={"Na": 1, "Cl": 1}, samples=samples)
                                              for i in ids])


def reasons(report):
    return {(r["target_id"], r["sample_index"]): r["reason"] for r in report.rows}


def test_each_bad_file_is_rejected_with_its_reason(tmp_path):
    records = [ok(reason, 0, f"s/{reason}.cif") for reason in BAD_FILES] + [ok("good", 0, "s/good.cif")]
    files = {f"s/{reason}.cif": text for reason, text in BAD_FILES.items()} | {"s/good.cif": BASE}
    out = make_shard(tmp_path, records, files)
    report = validate_shard(out, request_for(records))
    got = reasons(report)
    for reason in BAD_FILES:
        assert got[(reason, 0)] == reason, (reason, [r["message"] for r in report.rows if r["target_id"] == reason])
    good = next(r for r in report.rows if r["target_id"] == "good")
    assert good["status"] == "accepted" and good["formula"] == "NaCl" and good["num_atoms"] == 2
    assert good["composition_match"] and good["num_atoms_match"]
    # nothing is lost: rejected rows keep the text the model wrote
    assert next(r for r in report.rows if r["target_id"] == "disordered")["cif"] == BAD_FILES["disordered"]


def test_path_and_file_attacks(tmp_path):
    outside = tmp_path / "secret.cif"
    outside.write_text(BASE)
    records = [ok("up", 0, "../secret.cif"), ok("abs", 0, str(outside)), ok("link", 0, "link.cif"),
               ok("missing", 0, "nope.cif"), ok("dir", 0, "folder"), ok("binary", 0, "bin.cif"),
               ok("inside_link", 0, "good_link.cif")]
    out = make_shard(tmp_path, records, {"folder/x.txt": "x", "real.cif": BASE})
    os.symlink(outside, out / "link.cif")
    os.symlink(out / "real.cif", out / "good_link.cif")
    (out / "bin.cif").write_bytes(b"\x00\x01\x02data_")
    got = reasons(validate_shard(out, request_for(records)))
    assert got == {("up", 0): "path_outside", ("abs", 0): "path_outside", ("link", 0): "symlink_escape",
                   ("missing", 0): "missing_file", ("dir", 0): "not_a_file", ("binary", 0): "parse_error",
                   ("inside_link", 0): None}


def test_limits_size_atoms_and_time(tmp_path):
    out = make_shard(tmp_path, [ok("a", 0, "a.cif")], {"a.cif": BASE})
    request = request_for([ok("a", 0, "a.cif")])
    assert reasons(validate_shard(out, request, Limits(max_file_bytes=100)))[("a", 0)] == "too_large"
    assert reasons(validate_shard(out, request, Limits(max_atoms=1)))[("a", 0)] == "too_many_atoms"
    (out / "a.cif").write_text(slow_cif(sites=20, blocks=1))  # a second of pymatgen's symmetry expansion
    assert reasons(validate_shard(out, request, Limits(parse_seconds=0.1)))[("a", 0)] == "timeout"


def test_record_level_problems(tmp_path):
    records = [
        {"target_id": "a", "sample_index": 0, "status": "failed", "message": "NaN in decoder", "seconds": 2.0},
        ok("a", 1, "a.cif"), ok("a", 1, "a.cif"), ok("zz", 0, "a.cif"),
        {"target_id": "a", "sample_index": 2, "status": "maybe", "seconds": 1},
        {"target_id": "w", "sample_index": 0, "status": "ok", "seconds": 0.1,
         "wyckoff": {"space_group": 225, "sites": [{"element": "Na", "letter": "a"}, {"element": "Cl", "letter": "z"}]}},
        {"target_id": "v", "sample_index": 0, "status": "ok", "seconds": 0.1,
         "wyckoff": {"space_group": 225, "sites": [{"element": "Na", "letter": "a"}, {"element": "Cl", "letter": "b"}]}},
    ]
    out = make_shard(tmp_path, records, {"a.cif": BASE})
    request = SampleRequest(task="csp", targets=[Target(id=i, composition={"Na": 1, "Cl": 1}, samples=3)
                                                 for i in ("a", "w", "v")])
    report = validate_shard(out, request)
    got = [(r["target_id"], r["sample_index"], r["status"], r["reason"]) for r in report.rows]
    assert ("a", 0, "rejected", "model_failed") in got
    assert ("a", 1, "accepted", None) in got
    assert ("a", 2, "rejected", "bad_record") in got  # breaks the schema: rejected, the others stand
    assert "Input should be 'ok' or 'failed'" in next(r["message"] for r in report.rows if r["reason"] == "bad_record")
    # a second record of a sample and a record nobody asked for are warnings, never rows
    assert len(got) == 9 and any("second record" in w for w in report.warnings)
    assert any("not requested, ignored, e.g. 'zz' #0" in w for w in report.warnings)
    assert ("w", 0, "rejected", "bad_wyckoff") in got
    assert ("v", 0, "accepted", None) in got
    assert len([g for g in got if g[3] == "missing_record"]) == 4  # w1, w2, v1, v2


BROKEN = {
    "missing": (None, "no manifest"),
    "not json": ("{", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    "schema": (json.dumps({"contract_version": "1.0", "task": "csp", "seed": 0, "model": {"name": "m"},
                           "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"},
                           "samples": {"a": 1}}), "$.samples: Input should be a valid list"),
    "version": (json.dumps({"contract_version": "7.1", "task": "csp", "seed": 0, "model": {"name": "m"},
                            "runtime": {"device": "cpu", "start": "2026-01-01T00:00:00Z"}, "samples": []}),
                "contract version 7.1"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_manifest_names_file_and_problem(tmp_path, case, capsys):
    text, message = BROKEN[case]
    out = tmp_path / "out"
    out.mkdir()
    if text is not None:
        (out / "manifest.json").write_text(text)
    with pytest.raises(ManifestError) as info:
        validate_shard(out)
    assert str(out / "manifest.json") in str(info.value) and message in str(info.value)
    assert main(["validate", str(out)]) == 1
    assert message.split(":")[0] in capsys.readouterr().err.replace("\n", "")


def test_cli_writes_every_row_and_exits_zero_on_model_faults(tmp_path, capsys):
    records = [ok("a", 0, "a.cif"), ok("b", 0, "b.cif")]
    out = make_shard(tmp_path, records, {"a.cif": BASE, "b.cif": "garbage", "stray.txt": "x"})
    (tmp_path / "request.json").write_text(request_for(records).model_dump_json())
    assert main(["validate", str(out)]) == 0
    table = pd.read_parquet(tmp_path / "structures.parquet")
    assert list(table["status"]) == ["accepted", "rejected"] and table["cif"][1] == "garbage"
    assert "not named in the manifest" in capsys.readouterr().err


def test_parses_made_while_the_model_runs_give_the_same_rows(tmp_path):
    """prevalidate.py: reused only for identical bytes, never past the time limit or a symlink."""
    from orchestrator.prevalidate import Prevalidator

    names = [*BAD_FILES, "good", "rewritten", "link"]
    records = [ok(name, 0, f"structures/{name}.cif") for name in names]
    files = {f"structures/{reason}.cif": text for reason, text in BAD_FILES.items()}
    out = make_shard(tmp_path, records, files | {"structures/good.cif": BASE, "structures/rewritten.cif": BASE})
    os.symlink(tmp_path / "outside.cif", out / "structures" / "link.cif")
    (tmp_path / "outside.cif").write_text(BASE)
    early = Prevalidator(out, Limits())
    early.scan()
    assert len(early.parsed) == len(set(files.values())) + 1  # every distinct text but the symlink's target
    (out / "structures" / "rewritten.cif").write_text(BAD_FILES["disordered"])  # after the parse
    request = request_for(records)
    plain, reused = validate_shard(out, request), validate_shard(out, request, parsed=early.parsed)
    pd.testing.assert_frame_equal(reused.frame(), plain.frame())
    assert reasons(reused)[("rewritten", 0)] == "disordered" and reasons(reused)[("link", 0)] == "symlink_escape"
    (out / "structures" / "good.cif").write_text(slow_cif(sites=20, blocks=1))
    slow = Prevalidator(out, Limits(parse_seconds=0.1))
    slow.scan()  # the background parse has the same time limit as validation, in a worker process
    assert reasons(validate_shard(out, request, Limits(parse_seconds=0.1), slow.parsed))[("good", 0)] == "timeout"


def test_the_background_parser_runs_while_files_appear(tmp_path):
    import time

    from orchestrator.prevalidate import POLL_SECONDS, Prevalidator

    out = tmp_path / "out"
    with Prevalidator(out, Limits()) as early:
        time.sleep(POLL_SECONDS * 2)  # the folder does not exist yet
        (out / "structures").mkdir(parents=True)
        (out / "structures" / ".a.cif.tmp").write_text(BASE[:50])  # the helper's temporary name: skipped
        (out / "structures" / "a.cif").write_text(BASE)
        deadline = time.monotonic() + 10
        while not early.parsed and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(early.parsed) == 1 and next(iter(early.parsed.values())).composition.reduced_formula == "NaCl"
