"""The tables of one evaluation and the intermediate results metrics share, each computed once.

Validity "modes" are the rules of a profile (validity.py):
- cdvae: a NaN lattice still counts as constructed (its comparisons are False);
  SMACT is the exact enumeration;
- diffcsp: NaN means not constructed; SMACT gives up above 1e7 combinations;
- gencsp: NaN means not constructed; SMACT exact (bounded, see validity.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .fingerprints import RecordSettings
from .records import Timing

MODES = ("cdvae", "diffcsp", "gencsp")


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    workers: int | None = None  # None: every core
    progress: bool = True
    cache: bool = True
    chgnet: bool = True  # Fréchet distance on CHGNet crystal features (gencsp profile)
    subset_size: int = 1000
    records: RecordSettings = field(default_factory=RecordSettings)


RECORD_COLUMNS = ("skey", "reason", "message", "formula", "composition", "symbols", "counts", "num_atoms",
                  "num_elems", "smact_valid", "smact_combinations", "smact_reason", "non_finite", "det_ok",
                  "volume", "min_dist", "density", "fp_reason", "fp_message", "spacegroup")


def record_frame(records: list[dict]):
    """Records -> a DataFrame of their scalars (arrays stay in the records); a column for every
    field even when no record has it (every structure unreadable)."""
    import pandas as pd

    return pd.DataFrame([{k: r.get(k) for k in RECORD_COLUMNS} for r in records], columns=list(RECORD_COLUMNS))


def _column(frame, name: str, missing):
    """A record column as bool or float, `missing` where a record has no value (unreadable structure)."""
    import pandas as pd

    kind = bool if isinstance(missing, bool) else float
    if name not in frame:
        return pd.Series(missing, index=frame.index, dtype=kind)
    return frame[name].map(lambda v: missing if v is None or v != v else v).astype(kind)


def validity_frame(frame, mode: str):
    """constructed, comp_valid, struct_valid, valid for each record row under a profile's rules."""
    import numpy as np
    import pandas as pd

    from .validity import MIN_VOLUME, composition_valid, structure_valid

    parsed = frame["reason"].isna()
    non_finite, det_ok = _column(frame, "non_finite", False), _column(frame, "det_ok", False)
    volume, min_dist = _column(frame, "volume", np.nan), _column(frame, "min_dist", np.nan)
    # NaN volume: `volume < 0.1` is False, so CDVAE counts the cell as constructed
    constructed = parsed & det_ok & ~(volume < MIN_VOLUME)
    if mode != "cdvae":
        constructed &= ~non_finite
    struct_valid = [structure_valid(c, d, v) for c, d, v in zip(constructed, min_dist, volume, strict=True)]
    smact, combos = _column(frame, "smact_valid", False), _column(frame, "smact_combinations", 0.0)
    comp_valid = [parsed_ok and composition_valid(s, c, mode)
                  for parsed_ok, s, c in zip(parsed, smact, combos, strict=True)]
    fingerprinted = frame["fp_reason"].isna()
    out = pd.DataFrame({"constructed": constructed.to_numpy(), "comp_valid": comp_valid,
                        "struct_valid": struct_valid}, index=frame.index)
    out["valid"] = out["comp_valid"] & out["struct_valid"] & fingerprinted.to_numpy()
    return out


class Context:
    """Predictions and reference records plus lazily computed shared results."""

    def __init__(self, inputs, gen_records: list[dict], ref_records: list[dict], settings: Settings,
                 cache, timing: Timing):
        import pandas as pd

        self.inputs, self.settings, self.cache, self.timing = inputs, settings, cache, timing
        self.gen_records, self.ref_records = gen_records, ref_records
        self.gen = pd.concat([inputs.predictions.reset_index(drop=True), record_frame(gen_records)], axis=1)
        self.ref = pd.concat([inputs.reference.reset_index(drop=True)[["target_id", "material_id", "cif"]],
                              record_frame(ref_records)], axis=1)
        self.notes: list[str] = []
        self.n_requested = len(self.gen)
        self.profile = "gencsp"
        self._memo: dict = {}

    def once(self, key: str, compute):
        """A shared intermediate result, computed on first use."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def computed(self, key: str):
        """An intermediate result if some metric computed it, else None."""
        return self._memo.get(key)

    @property
    def workers(self) -> int:
        from .pool import default_workers

        return self.settings.workers or default_workers()

    @functools.cache  # noqa: B019 - one context per evaluation
    def validity(self, mode: str, side: str = "gen"):
        return validity_frame(self.gen if side == "gen" else self.ref, mode)

    def arrays(self, side: str, rows=None):
        """(structure fps, scaled composition fps) of the given rows (positions) of a side."""
        import numpy as np

        from .fingerprints import scale_composition

        records = self.gen_records if side == "gen" else self.ref_records
        rows = range(len(records)) if rows is None else rows
        if not len(rows):  # e.g. a model none of whose samples became a structure
            return np.zeros((0, 0)), np.zeros((0, 0))
        struct = np.array([records[i]["struct_fp"] for i in rows], dtype=float).reshape(len(rows), -1)
        comp = np.array([records[i]["comp_fp"] for i in rows], dtype=float).reshape(len(rows), -1)
        return struct, scale_composition(comp)

    @functools.cached_property
    def ref_rows(self):
        """Reference crystals with both fingerprints (the reference scripts assume all have them)."""
        import numpy as np

        ok = np.flatnonzero(self.ref["fp_reason"].isna().to_numpy())
        if len(ok) < len(self.ref):
            self.notes.append(f"{len(self.ref) - len(ok)} reference crystal(s) without fingerprints left out "
                              "of coverage and Fréchet distances")
        return ok

    @functools.cached_property
    def ref_arrays(self):
        return self.arrays("ref", self.ref_rows)

    @functools.cache  # noqa: B019
    def nearest(self, rows: tuple):
        from .coverage import CUTOFFS, nearest

        gen_struct, gen_comp = self.arrays("gen", rows)
        ref_struct, ref_comp = self.ref_arrays
        return nearest(gen_struct, gen_comp, ref_struct, ref_comp, *CUTOFFS[self.inputs.kind])

    def fingerprinted_rows(self) -> tuple:
        """CDVAE's coverage set: every generated crystal with both fingerprints, valid or not."""
        import numpy as np

        return tuple(np.flatnonzero(self.gen["fp_reason"].isna().to_numpy()).tolist())

    def valid_rows(self, mode: str) -> tuple:
        import numpy as np

        return tuple(np.flatnonzero(self.validity(mode)["valid"].to_numpy()).tolist())

    @functools.cache  # noqa: B019
    def subset(self, mode: str, allow_fewer: bool) -> tuple:
        """Rows of the seeded distribution subset among the valid crystals of `mode`."""
        from .distribution import subset_indices

        valid = self.valid_rows(mode)
        picks = subset_indices(len(valid), self.settings.subset_size, self.settings.seed, allow_fewer)
        return tuple(valid[i] for i in picks)

    def chgnet_features(self, mode: str):
        """CHGNet crystal features of the distribution subset and of the reference crystals."""
        import numpy as np

        from .chgnet_features import crystal_features

        rows = list(self.subset(mode, True))
        items = {self.gen.at[i, "skey"]: self.gen.at[i, "cif"] for i in rows}
        items.update({self.ref.at[i, "skey"]: self.ref.at[i, "cif"] for i in self.ref_rows})
        features = crystal_features(items, self.cache, self.settings.progress, self.timing)
        gen = [features[self.gen.at[i, "skey"]] for i in rows if self.gen.at[i, "skey"] in features]
        ref = [features[self.ref.at[i, "skey"]] for i in self.ref_rows if self.ref.at[i, "skey"] in features]
        if len(gen) < len(rows) or len(ref) < len(self.ref_rows):
            self.notes.append(f"CHGNet could not read {len(rows) - len(gen)} generated and "
                              f"{len(self.ref_rows) - len(ref)} reference crystal(s): left out of fd_chgnet")
        return np.array(gen), np.array(ref)

    def unique_and_novel(self) -> dict:
        """{row of a valid crystal: (uniqueness group label, novel or None)}."""
        from .uniqueness import primitive_facts, unique_and_novel

        rows = list(self.valid_rows("gencsp"))
        texts = {self.gen.at[i, "skey"]: self.gen.at[i, "cif"] for i in rows}
        train = None
        if self.inputs.train is not None:
            from .records import text_sha

            train_texts = {text_sha(t): t for t in self.inputs.train["cif"]}
            texts.update(train_texts)
        facts = primitive_facts(texts, self.workers, self.cache, self.settings.progress, self.timing)
        generated = [(i, self.gen.at[i, "cif"], facts[self.gen.at[i, "skey"]]) for i in rows]
        if self.inputs.train is not None:
            train = [(t, facts[k]) for k, t in train_texts.items() if facts[k]["composition"] is not None]
        return unique_and_novel(generated, train, self.workers, self.settings.progress, self.timing)
