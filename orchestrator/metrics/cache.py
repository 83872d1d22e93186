"""Persistent cache of per-structure facts and fingerprints: `paths.home()/cache/metrics.sqlite`.

Two tables, both keyed by a version string (gencsp's record version plus the
versions of every library that changes a number, see `records.version()`):
- `texts`: sha256 of a CIF text -> the canonical key of the structure it parses
  to, so that a warm evaluation never parses a CIF again;
- `records`: canonical structure key -> the record (scalars as JSON, arrays as
  float64 bytes), so that the same structure written differently is computed once.
More tables keep what else is computed twice: `pairs` (structure-matcher RMS of
two structures under named tolerances), `features` (learned crystal features,
float arrays) and `facts` (small JSON values such as a primitive cell's size).

SQLite gives atomic transactions and lets several processes read while one
writes (WAL). Only the parent process writes; workers read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .. import paths

ARRAYS = ("struct_fp", "comp_fp")
SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (text_sha TEXT, version TEXT, skey TEXT, PRIMARY KEY (text_sha, version));
CREATE TABLE IF NOT EXISTS records (skey TEXT, version TEXT, scalars TEXT, struct_fp BLOB, comp_fp BLOB,
    PRIMARY KEY (skey, version));
CREATE TABLE IF NOT EXISTS features (skey TEXT, version TEXT, value BLOB, PRIMARY KEY (skey, version));
CREATE TABLE IF NOT EXISTS facts (key TEXT, version TEXT, value TEXT, PRIMARY KEY (key, version));
CREATE TABLE IF NOT EXISTS pairs (pair TEXT, version TEXT, rms REAL, message TEXT, PRIMARY KEY (pair, version));
"""


def default_path() -> Path:
    return paths.home() / "cache" / "metrics.sqlite"


def _blob(array) -> bytes | None:
    import numpy as np

    return None if array is None else np.asarray(array, dtype="<f8").tobytes()


def _array(blob: bytes | None):
    import numpy as np

    return None if blob is None else np.frombuffer(blob, dtype="<f8").copy()


class Cache:
    """A handle on the cache file; `Cache(None)` is a cache that remembers nothing."""

    def __init__(self, path: Path | None, version: str, readonly: bool = False):
        self.path, self.version, self.readonly = path, version, readonly
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection | None:
        if self._db is None and self.path is not None:
            if self.readonly:
                if not Path(self.path).exists():
                    return None
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=60)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(SCHEMA)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- reads ---------------------------------------------------------------

    def _select(self, sql: str, keys: list[str]) -> list[tuple]:
        if self.db is None or not keys:
            return []
        rows = []
        for start in range(0, len(keys), 900):  # SQLite's limit on bound parameters
            chunk = keys[start:start + 900]
            marks = ",".join("?" * len(chunk))
            try:
                rows += self.db.execute(sql.format(marks=marks), [self.version, *chunk]).fetchall()
            except sqlite3.OperationalError:  # a read-only view of a file not yet initialised
                return []
        return rows

    def structure_keys(self, text_shas: list[str]) -> dict[str, str]:
        rows = self._select("SELECT text_sha, skey FROM texts WHERE version=? AND text_sha IN ({marks})",
                            text_shas)
        return dict(rows)

    def records(self, skeys: list[str]) -> dict[str, dict]:
        rows = self._select("SELECT skey, scalars, struct_fp, comp_fp FROM records "
                            "WHERE version=? AND skey IN ({marks})", skeys)
        out = {}
        for skey, scalars, struct_fp, comp_fp in rows:
            record = json.loads(scalars)
            record.update(struct_fp=_array(struct_fp), comp_fp=_array(comp_fp))
            out[skey] = record
        return out

    def features(self, skeys: list[str], kind: str) -> dict:
        rows = self._select("SELECT skey, value FROM features WHERE version=? AND skey IN ({marks})",
                            [f"{kind}:{k}" for k in skeys])
        return {skey.split(":", 1)[1]: _array(value) for skey, value in rows}

    def facts(self, keys: list[str]) -> dict:
        rows = self._select("SELECT key, value FROM facts WHERE version=? AND key IN ({marks})", keys)
        return {key: json.loads(value) for key, value in rows}

    def pairs(self, keys: list[str]) -> dict[str, tuple[float | None, str | None]]:
        rows = self._select("SELECT pair, rms, message FROM pairs WHERE version=? AND pair IN ({marks})", keys)
        return {pair: (rms, message) for pair, rms, message in rows}

    # --- writes (parent process only) ----------------------------------------

    def _write(self, sql: str, rows: Iterable[tuple]) -> None:
        if self.db is None or self.readonly:
            return
        with self.db:  # one transaction: all rows or none
            self.db.executemany(sql, rows)

    def put_records(self, items: list[tuple[str, str, dict]]) -> None:
        """(text sha, structure key, record) triples."""
        self._write("INSERT OR REPLACE INTO texts VALUES (?, ?, ?)",
                    [(sha, self.version, skey) for sha, skey, _ in items])
        self._write("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", [
            (skey, self.version, json.dumps({k: v for k, v in record.items() if k not in ARRAYS}),
             _blob(record.get("struct_fp")), _blob(record.get("comp_fp")))
            for _, skey, record in items
        ])

    def put_features(self, kind: str, items: dict) -> None:
        self._write("INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                    [(f"{kind}:{skey}", self.version, _blob(value)) for skey, value in items.items()])

    def put_facts(self, items: dict) -> None:
        self._write("INSERT OR REPLACE INTO facts VALUES (?, ?, ?)",
                    [(key, self.version, json.dumps(value)) for key, value in items.items()])

    def put_pairs(self, items: dict[str, tuple[float | None, str | None]]) -> None:
        self._write("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?)",
                    [(pair, self.version, rms, message) for pair, (rms, message) in items.items()])
