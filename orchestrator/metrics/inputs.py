"""What an evaluation reads: predictions (CSV, folder of CIFs, run directory) and reference sets.

Every prediction row is a requested sample. A row without a usable CIF (a sample
the model failed, a rejected or unsupported sample of a run) keeps its reason and
counts as "not constructed" in every denominator over generated samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GencspError

TASKS = ("generate", "csp")
PREDICTION_COLUMNS = ("target_id", "sample_index", "cif", "input_reason", "input_message", "seconds")
_HELPER_NAME = re.compile(r"^(?P<target>.+)\.(?P<index>\d+)\.cif$")


class InputError(GencspError):
    """Predictions or a reference set that cannot be evaluated as given."""


@dataclass
class Inputs:
    task: str
    kind: str
    predictions: object  # DataFrame with PREDICTION_COLUMNS, one row per requested sample
    reference: object  # DataFrame: material_id, target_id, cif
    train: object | None = None  # DataFrame with a cif column, or None
    run: object | None = None  # orchestrator.runs.Run when evaluating a run directory
    source: dict = field(default_factory=dict)  # provenance of every input


def read_csv(path: Path):
    import pandas as pd

    from ..datasets import _has_index_column

    try:
        return pd.read_csv(path, index_col=0 if _has_index_column(path) else None)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({exc})") from exc


def load_structures(spec: str, role: str):
    """A path to a CSV with a cif column, or NAME/SPLIT of a registered dataset -> (frame, provenance)."""
    from .. import datasets
    from ..hashing import sha256_file
    from ..targets import target_id

    path = Path(spec)
    if path.is_file():
        frame = read_csv(path)
        provenance = {"path": str(path.resolve()), "sha256": sha256_file(path)}
    elif "/" in spec and not path.exists() and spec.split("/")[0] in datasets.registry():
        name, split = spec.split("/", 1)
        frame = datasets.load(name, split)
        provenance = {"dataset": name, "split": split, "kind": datasets.get(name).kind,
                      "sha256": sha256_file(datasets.fetch(name, split, progress=False))}
    else:
        raise InputError(f"{role} {spec!r}: no such file, nor a dataset NAME/SPLIT (see `gencsp data list`)")
    if "cif" not in frame.columns:
        raise InputError(f"{role} {spec}: no 'cif' column (columns: {', '.join(map(str, frame.columns))})")
    if "material_id" not in frame.columns:
        frame.insert(0, "material_id", [str(i) for i in range(len(frame))])
    frame["material_id"] = frame["material_id"].astype(str)
    frame["target_id"] = [target_id(m) for m in frame["material_id"]]
    frame["cif"] = frame["cif"].fillna("").astype(str)
    for column in ("material_id", "target_id"):  # a repeated id would count its target twice
        repeated = frame[column][frame[column].duplicated(keep=False)]
        if len(repeated):
            first = repeated.iloc[0]
            rows = [i + 1 for i in repeated.index[repeated == first][:5]]
            raise InputError(f"{role} {spec}: {column} {first!r} appears {int((repeated == first).sum())} times "
                             f"(rows {', '.join(map(str, rows))}); ids must be unique")
    provenance["rows"] = len(frame)
    return frame.reset_index(drop=True), provenance


def check_reference_records(records: list[dict], source: dict) -> None:
    """A reference none of whose CIFs can be read gives every match rate 0: an error, not a number."""
    unreadable = [r for r in records if r.get("reason")]
    if isinstance(source.get("reference"), dict):
        source["reference"]["unreadable"] = len(unreadable)
    if records and len(unreadable) == len(records):
        where = source.get("reference", {}) if isinstance(source.get("reference"), dict) else {}
        name = where.get("path") or where.get("truth") or where.get("dataset") or "the reference"
        example = unreadable[0]
        raise InputError(f"reference {name}: none of its {len(records)} CIFs could be read "
                         f"(e.g. {example['reason']}: {example.get('message')})")


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def _integer(value, path: Path, row: int, column: str) -> int:
    """A whole number >= 0 from a CSV cell (pandas reads 3 as 3.0 in a column with blanks)."""
    import math

    if isinstance(value, bool):
        value = None
    try:
        number = float(value) if not isinstance(value, int) else value
        if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
            raise ValueError
        number = int(number)
    except (TypeError, ValueError):
        raise InputError(f"{path}, row {row}: {column} {value!r} is not an integer") from None
    if number < 0:
        raise InputError(f"{path}, row {row}: {column} {value!r} is negative")
    return number


def _seconds(value, path: Path, row: int):
    import math

    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}, row {row}: seconds {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise InputError(f"{path}, row {row}: seconds {value!r} is not a duration")
    return number


def predictions_from_csv(path: Path, task: str):
    """One row per sample. Without a sample_index column, a target's rows are its samples 0, 1, ...
    in order; a row repeating another's sample (or, without sample_index, its target and CIF) is
    an error: a file pasted twice would otherwise read as twice the samples."""
    frame = read_csv(path)
    if "cif" not in frame.columns:
        raise InputError(f"{path}: predictions need a 'cif' column")
    if task == "csp" and "target_id" not in frame.columns:
        raise InputError(f"{path}: CSP predictions need a 'target_id' column (the reference's material_id)")
    indexed = "sample_index" in frame.columns
    rows, seen, counts = [], {}, {}
    for i, row in enumerate(frame.to_dict("records")):
        text = row["cif"] if isinstance(row["cif"], str) else ""
        target = str(row.get("target_id", f"gen-{i}"))
        index = _integer(row["sample_index"], path, i + 1, "sample_index") if indexed else counts.get(target, 0)
        counts[target] = counts.get(target, 0) + 1
        key = (target, index) if indexed else (target, text)
        if key in seen:
            what = f"sample_index {index}" if indexed else "CIF (add a sample_index column if this is meant)"
            raise InputError(f"{path}: row {i + 1} repeats row {seen[key]} (target_id {target!r}, same {what})")
        seen[key] = i + 1
        rows.append({"target_id": target, "sample_index": index, "cif": text, "input_reason": None,
                     "input_message": None, "seconds": _seconds(row.get("seconds"), path, i + 1)})
    return _frame(rows)


def predictions_from_folder(path: Path, task: str):
    files = sorted(p for p in path.iterdir() if p.suffix == ".cif" and p.is_file())
    if not files:
        raise InputError(f"{path}: no *.cif files")
    rows = []
    for i, file in enumerate(files):
        match = _HELPER_NAME.match(file.name)
        if task == "csp" and not match:
            raise InputError(f"{file}: CSP predictions in a folder must be named <target_id>.<sample_index>.cif")
        raw = file.read_bytes()
        text = "" if b"\x00" in raw else raw.decode("utf-8", errors="replace")
        reason = "parse_error" if b"\x00" in raw else None
        rows.append({"target_id": match["target"] if match else file.stem,
                     "sample_index": int(match["index"]) if match else 0, "cif": text,
                     "input_reason": reason, "input_message": "binary content, not CIF text" if reason else None,
                     "seconds": None})
        if task == "generate":
            rows[-1]["target_id"], rows[-1]["sample_index"] = f"gen-{i}", 0
    return _frame(rows)


def predictions_from_run(run):
    """Every requested sample of the run table; rejected ones keep their validation reason."""
    import pandas as pd

    path = run.path / "structures.parquet"
    if not path.is_file():
        raise InputError(f"{run.path}: no structures.parquet yet (finish the run with `gencsp bench`)")
    table = pd.read_parquet(path)
    rows = []
    for row in table.to_dict("records"):
        accepted = row["status"] == "accepted"
        text = row.get("cif") if accepted and isinstance(row.get("cif"), str) else None
        reason = None if text else (row.get("reason") or "no_structure")
        message = None if text else (row.get("message") or ("a Wyckoff description not realised as a structure"
                                                            if accepted else None))
        rows.append({"target_id": str(row["target_id"]), "sample_index": int(row["sample_index"]), "cif": text,
                     "input_reason": reason, "input_message": message, "seconds": row.get("seconds")})
    return _frame(rows)


def from_run(path: Path, train: str | None = None) -> Inputs:
    from .. import datasets
    from ..runs import Run

    run = Run(path)
    info = run.info
    task = str(info["config"]["task"])
    dataset = info["dataset"]
    if task == "csp":
        truth = run.truth()
        if truth is None:
            raise InputError(f"{path}: a CSP run without targets.parquet")
        reference = truth[["target_id", "material_id", "cif"]].copy()
        source = {"truth": str(path / "targets.parquet")}
    else:
        reference = datasets.load(dataset["name"], dataset["split"])
        reference["target_id"] = reference["material_id"]
        source = {"dataset": dataset["name"], "split": dataset["split"],
                  "sha256": dataset.get("sha256"), "rows": len(reference)}
    inputs = Inputs(task=task, kind=dataset["kind"], predictions=predictions_from_run(run), reference=reference,
                    run=run, source={"predictions": str(run.path), "run_id": info.get("run_id"),
                                     "reference": source})
    if train:
        inputs.train, inputs.source["train"] = load_structures(train, "train set")
    return inputs


def from_files(predictions: Path, task: str, reference: str, kind: str | None, train: str | None = None) -> Inputs:
    from ..runs import RUN_JSON

    if (predictions / RUN_JSON).is_file() if predictions.is_dir() else False:
        return from_run(predictions, train)
    if task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}")
    if not reference:
        raise InputError("--reference is needed unless PREDICTIONS is a run directory")
    ref, ref_source = load_structures(reference, "reference")
    kind = kind or ref_source.get("kind")
    if kind is None:
        raise InputError("--kind is needed (perovskite, carbon or mp20): it selects the coverage cut-offs")
    if predictions.is_dir():
        frame = predictions_from_folder(predictions, task)
    elif predictions.is_file():
        frame = predictions_from_csv(predictions, task)
    else:
        raise InputError(f"{predictions}: no such file or folder")
    inputs = Inputs(task=task, kind=kind, predictions=frame, reference=ref,
                    source={"predictions": str(predictions.resolve()), "reference": ref_source})
    if train:
        inputs.train, inputs.source["train"] = load_structures(train, "train set")
    return inputs
