"""Validate what a model image wrote: its manifest and every file it names.

Model faults (a failed sample, an unreadable CIF, a path escaping the output
folder, ...) become rejected rows with a reason; only a manifest that cannot
be read or does not follow the schema is an error (ManifestError). Nothing the
model wrote is lost: accepted and rejected samples are all rows of the table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from schemas import CONTRACT_VERSION, Manifest, SampleRecord, SampleRequest, Status
from schemas.errors import format_errors

from .errors import GencspError
from .parse_pool import read_structure_bounded
from .structures import DEFAULT_MAX_ATOMS, DEFAULT_PARSE_SECONDS, StructureError

MANIFEST = "manifest.json"
ACCEPTED, REJECTED = "accepted", "rejected"
COLUMNS = (
    "target_id", "sample_index", "status", "reason", "message", "model_status", "seconds",
    "cif_path", "cif", "wyckoff", "formula", "num_atoms", "num_elements", "volume",
    "composition_match", "num_atoms_match",
)


# Fixed column types, so that tables of different shards concatenate without guessing.
DTYPES = {"shard": "Int64", "sample_index": "int64", "seconds": "float64", "num_atoms": "Int64",
          "num_elements": "Int64", "volume": "float64", "composition_match": "boolean",
          "num_atoms_match": "boolean"}


def typed(frame):
    """`frame` with the columns of DTYPES cast (text columns stay objects)."""
    return frame.astype({c: t for c, t in DTYPES.items() if c in frame.columns})


class ManifestError(GencspError):
    """The manifest is missing, unreadable or breaks the schema: the whole shard is unusable."""


@dataclass(frozen=True)
class Limits:
    parse_seconds: float = DEFAULT_PARSE_SECONDS
    max_atoms: int = DEFAULT_MAX_ATOMS
    max_file_bytes: int = 10 * 1024 * 1024


@dataclass
class Report:
    manifest: Manifest
    rows: list[dict]
    warnings: list[str] = field(default_factory=list)

    def frame(self):
        import pandas as pd

        return typed(pd.DataFrame(self.rows, columns=list(COLUMNS)))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            key = row["status"] if row["status"] == ACCEPTED else f"rejected: {row['reason']}"
            out[key] = out.get(key, 0) + 1
        return out


MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def read_manifest_data(out_dir: Path):
    """The parsed JSON of `out_dir/manifest.json`: a regular file inside the folder, of bounded size and depth."""
    path = Path(out_dir) / MANIFEST
    if not os.path.lexists(path):
        raise ManifestError(f"{path}: no manifest (the model wrote none)")
    try:
        real = resolve_inside(out_dir, MANIFEST, MAX_MANIFEST_BYTES)
        raw = read_file(real, MAX_MANIFEST_BYTES)
    except StructureError as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise ManifestError(f"{path}: JSON nested too deeply to be a manifest") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ManifestError(f"{path}: not a usable JSON document: {printable(str(exc))[:200]}") from exc


def load_manifest(out_dir: Path, rejects: list | None = None) -> Manifest:
    """The manifest; records that break the schema are left out (and listed in `rejects` as
    (record, message) pairs) so that one bad record never costs the others."""
    from pydantic import ValidationError

    path = Path(out_dir) / MANIFEST
    data = read_manifest_data(out_dir)
    records = data.get("samples") if isinstance(data, dict) else None
    envelope = {**data, "samples": []} if isinstance(records, list) else data
    try:
        manifest = Manifest.model_validate(envelope)
    except ValidationError as exc:
        raise ManifestError(f"{path}: does not follow the manifest schema:\n{format_errors(exc)}") from exc
    except RecursionError as exc:
        raise ManifestError(f"{path}: JSON nested too deeply to be a manifest") from exc
    if manifest.contract_version.split(".")[0] != CONTRACT_VERSION.split(".")[0]:
        raise ManifestError(
            f"{path}: contract version {manifest.contract_version}, this gencsp speaks {CONTRACT_VERSION}"
        )
    for k, raw in enumerate(records):
        try:
            manifest.samples.append(SampleRecord.model_validate(raw))
        except (ValidationError, RecursionError) as exc:
            detail = format_errors(exc) if isinstance(exc, ValidationError) else "nested too deeply"
            if rejects is not None:
                rejects.append((raw, printable(f"record {k} breaks the manifest schema: {detail}")[:2000]))
    return manifest


def printable(text: str) -> str:
    """`text` with what no table or terminal can hold escaped: lone surrogates, NUL."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def read_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, opened without blocking (a FIFO swapped in is refused, not waited on)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise StructureError("unreadable_file", f"cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StructureError("not_a_file", "not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise StructureError("unreadable_file", f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise StructureError("too_large", f"more than the limit of {max_bytes} bytes")
    return raw


def resolve_inside(out_dir: Path, relative: str, max_bytes: int) -> Path:
    """The file a manifest names, if it is a regular file inside `out_dir`."""
    try:
        return _resolve_inside(out_dir, relative, max_bytes)
    except (OSError, ValueError) as exc:  # NUL byte, lone surrogate, name too long, symlink loop...
        if isinstance(exc, StructureError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StructureError("bad_path", f"{relative!r} is not a usable path: {reason}"[:500]) from exc


def _resolve_inside(out_dir: Path, relative: str, max_bytes: int) -> Path:
    root = Path(os.path.realpath(out_dir))
    if os.path.isabs(relative):
        raise StructureError("path_outside", f"{relative!r} is an absolute path")
    relative.encode("utf-8")  # a lone surrogate names no file
    if "\x00" in relative:
        raise StructureError("bad_path", f"{relative!r} holds a NUL byte")
    lexical = Path(os.path.normpath(root / relative))
    if lexical != root and root not in lexical.parents:
        raise StructureError("path_outside", f"{relative!r} points outside the output folder")
    real = Path(os.path.realpath(lexical, strict=False))
    if real != root and root not in real.parents:
        raise StructureError("symlink_escape", f"{relative!r} is a symlink leading outside the output folder")
    if not real.exists():
        raise StructureError("missing_file", f"{relative!r} does not exist")
    if not real.is_file():
        raise StructureError("not_a_file", f"{relative!r} is not a regular file")
    size = real.stat().st_size
    if size > max_bytes:
        raise StructureError("too_large", f"{relative!r} is {size} bytes, more than the limit of {max_bytes}")
    return real


def _row(record: SampleRecord | None, target_id: str, index: int, **values) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(target_id=target_id, sample_index=index)
    if record is not None:
        row.update(model_status=str(record.status), seconds=record.seconds, message=record.message)
        if record.wyckoff is not None:
            row["wyckoff"] = record.wyckoff.model_dump_json()
    row.update(values)
    return {k: printable(v) if isinstance(v, str) else v for k, v in row.items()}


def _reject(record, target_id, index, reason, message, **values) -> dict:
    return _row(record, target_id, index, status=REJECTED, reason=reason, message=message, **values)


def check_wyckoff(description) -> None:
    """Every letter exists in the space group (pyxtal tables)."""
    from pymatgen.core import Element
    from pyxtal.symmetry import Group

    letters = {wp.letter for wp in Group(description.space_group).Wyckoff_positions}
    for site in description.sites:
        if not Element.is_valid_symbol(site.element):
            raise StructureError("unknown_element", f"{site.element!r} is not a chemical element")
        if site.letter not in letters:
            raise StructureError(
                "bad_wyckoff", f"space group {description.space_group} has no Wyckoff position {site.letter!r}"
            )


def _structure(text: str, raw: bytes, limits: Limits, parsed: dict | None):
    """read_structure (in a worker process, with its time limit), or the outcome of an earlier parse of the very same bytes (prevalidate.py)."""
    if parsed:
        from .prevalidate import content_key

        outcome = parsed.get(content_key(raw))
        if isinstance(outcome, StructureError):
            raise outcome
        if outcome is not None:
            return outcome
    return read_structure_bounded(text, limits.parse_seconds, limits.max_atoms)


def check_record(record: SampleRecord, out_dir: Path, target, limits: Limits, parsed: dict | None = None) -> dict:
    """One manifest record -> one row, accepted or rejected with a reason."""
    tid, index = record.target_id, record.sample_index
    if record.status == Status.failed:
        return _reject(record, tid, index, "model_failed", record.message)
    if record.cif is None:
        try:
            check_wyckoff(record.wyckoff)
        except StructureError as exc:
            return _reject(record, tid, index, exc.reason, str(exc))
        return _row(record, tid, index, status=ACCEPTED)
    text = None
    try:
        path = resolve_inside(out_dir, record.cif, limits.max_file_bytes)
        raw = read_file(path, limits.max_file_bytes)
        text = raw.decode("utf-8", errors="replace")
        if b"\x00" in raw:
            raise StructureError("parse_error", "binary content, not CIF text")
        structure = _structure(text, raw, limits, parsed)
    except StructureError as exc:
        return _reject(record, tid, index, exc.reason, str(exc), cif_path=record.cif, cif=text)
    composition = structure.composition
    values = {
        "status": ACCEPTED, "cif_path": record.cif, "cif": text,
        "formula": composition.reduced_formula, "num_atoms": len(structure),
        "num_elements": len(composition.elements), "volume": float(structure.volume),
    }
    if target is not None and target.composition:
        from pymatgen.core import Composition

        values["composition_match"] = Composition(target.composition).reduced_formula == composition.reduced_formula
        values["num_atoms_match"] = target.num_atoms == len(structure)
    return _row(record, tid, index, **values)


INT64_MAX = 2**63 - 1


def validate_shard(out_dir: Path, request: SampleRequest | None = None, limits: Limits = Limits(),
                   parsed: dict | None = None) -> Report:
    """Check a manifest and its files; with the request, also that every sample is answered.

    With a request, the rows are exactly the requested samples, in the request's order:
    records for samples not asked for, and second records of a sample, are ignored and
    reported as warnings. `parsed`: CIF parses made while the model ran (prevalidate.py),
    reused for identical bytes.
    """
    out_dir = Path(out_dir)
    bad: list[tuple[object, str]] = []
    manifest = load_manifest(out_dir, bad)
    targets = {t.id: t for t in request.targets} if request else {}
    requested = request.requested() if request else None
    wanted = set(requested) if requested is not None else None
    report = Report(manifest=manifest, rows=[])
    if request is not None and manifest.task != request.task:
        report.warnings.append(f"manifest task {manifest.task} differs from the request's {request.task}")
    if not manifest.complete:
        report.warnings.append("the manifest is marked incomplete: the model stopped before finishing")
    rows: dict[tuple[str, int], dict] = {}
    ignored: dict[str, list] = {"not requested": [], "duplicate": [], "unusable": []}
    for raw, message in bad:
        key = _key_of(raw)
        if key is not None and (wanted is None or key in wanted) and key not in rows:
            rows[key] = _reject(None, *key, "bad_record", message)
        else:
            ignored["unusable"].append(message)
    for record in manifest.samples:
        key = (record.target_id, record.sample_index)
        if wanted is not None and key not in wanted or wanted is None and key[1] > INT64_MAX:
            ignored["not requested"].append(key)
        elif key in rows:
            ignored["duplicate"].append(key)
        else:
            rows[key] = check_record(record, out_dir, targets.get(record.target_id), limits, parsed)
    report.warnings += _ignored_warnings(ignored)
    if requested is None:
        report.rows = list(rows.values())
    else:
        why = "the model stopped before producing it" if not manifest.complete else "no record in the manifest"
        report.rows = [rows.get(key) or _reject(None, *key, "missing_record", why) for key in requested]
    extra = unnamed_files(out_dir, {r.cif for r in manifest.samples if r.cif})
    if extra:
        report.warnings.append(f"{len(extra)} file(s) not named in the manifest, e.g. {printable(extra[0])}")
    return report


def _key_of(raw) -> tuple[str, int] | None:
    """(target id, sample index) of a record that breaks the schema, when it still names them."""
    if not isinstance(raw, dict):
        return None
    target, index = raw.get("target_id"), raw.get("sample_index")
    if isinstance(target, str) and isinstance(index, int) and not isinstance(index, bool) and 0 <= index <= INT64_MAX:
        return target, index
    return None


def _ignored_warnings(ignored: dict[str, list]) -> list[str]:
    texts = {"not requested": "record(s) for samples not requested, ignored",
             "duplicate": "second record(s) of a sample, ignored (the first one counts)",
             "unusable": "record(s) breaking the schema without a requested sample to reject, ignored"}
    warnings = []
    for kind, items in ignored.items():
        if items:
            example = items[0] if isinstance(items[0], str) else f"{items[0][0]!r} #{items[0][1]}"
            warnings.append(printable(f"{len(items)} {texts[kind]}, e.g. {example}")[:1000])
    return warnings


def unnamed_files(out_dir: Path, named: set[str]) -> list[str]:
    """Files of the output folder that no record names (symlinked folders are not entered)."""
    extra = []
    for folder, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            relative = os.path.relpath(os.path.join(folder, name), out_dir)
            if name != MANIFEST and not name.startswith(".") and relative not in named:
                extra.append(relative)
    return extra
