"""Stability from an ensemble of ML potentials (gencsp profile): dft/ensemble.py over every engine of
`gencsp relax` that finished (two or more). Per-engine rates, the ensemble's, and the spread
between engines, each at both thresholds named in the key; every engine's checkpoint identity
goes into the provenance notes. Reported beside, never instead of, the single-engine numbers.
"""

from __future__ import annotations

from .registry import SKIP, metric

THRESHOLD_TEXT = {"stable_rate@0.0eV": "energy above its hull <= 0.0 eV/atom (stable, LeMat-GenBench's threshold)",
                  "metastable_rate@0.1eV": "energy above its hull <= 0.1 eV/atom (metastable, MatterGen's S.U.N. "
                                           "threshold)"}
ENGINES = ("chgnet", "sevennet", "mace", "orb", "mattersim")


def _ensemble(ctx):
    def make():
        run = ctx.inputs.run
        if run is None:
            return None
        from dft.ensemble import assess_ensemble

        result = assess_ensemble(run.path, write=False)
        if result is not None:
            for e in result["engines"]:
                ident = e["identity"]
                ctx.notes.append(f"stability ensemble: {e['engine']} = {ident.get('package')} {ident.get('version')}, "
                                 f"model {ident.get('model')}, checkpoint sha256 {ident.get('checkpoint_sha256')}; "
                                 f"hull reference {e['reference']}")
        return result
    return ctx.once("ensemble", make)


def _value(section: str, key: str, engine: str | None = None):
    def compute(ctx):
        result = _ensemble(ctx)
        if result is None:
            return SKIP
        if engine is None:
            return result[section][key]
        found = [e for e in result["engines"] if e["engine"] == engine]
        return found[0][key] if found else SKIP
    return compute


for _rate, _text in THRESHOLD_TEXT.items():
    metric(f"ensemble.{_rate}", f"requested samples whose mean over the potentials of the {_text.split(' (')[0]} "
           f"(each potential relaxing and scoring against its own hull, >= 2 potentials) / requested samples; "
           f"{_text.split('(')[1].rstrip(')')}", "higher", "any", {"gencsp": f"ensemble.{_rate}"}, {})(
        _value("ensemble", _rate))
    metric(f"ensemble.engine_mean.{_rate}", f"mean over the potentials of their own rate of samples with {_text}",
           "higher", "any", {"gencsp": f"ensemble.engine_mean.{_rate}"}, {})(_value("ensemble", f"engine_mean.{_rate}"))
    metric(f"ensemble.engine_std.{_rate}", "spread of that rate between potentials (population std over potentials)",
           "none", "any", {"gencsp": f"ensemble.engine_std.{_rate}"}, {})(_value("ensemble", f"engine_std.{_rate}"))
    for _engine in ENGINES:
        metric(f"{_engine}.{_rate}", f"requested samples with {_text}, relaxed and scored by {_engine} alone "
               "(ensemble member)", "higher", "any", {"gencsp": f"ensemble.{_engine}.{_rate}"}, {})(
            _value("engines", _rate, _engine))

metric("ensemble.e_above_hull_std", "spread between potentials on the samples: mean over samples of the population "
       "std of their energies above hull (eV/atom)", "none", "any", {"gencsp": "ensemble.e_above_hull_std"}, {})(
    _value("ensemble", "e_above_hull_std_mean"))
metric("ensemble.e_above_hull_std_median", "median over samples of that std (eV/atom)", "none", "any",
       {"gencsp": "ensemble.e_above_hull_std_median"}, {})(_value("ensemble", "e_above_hull_std_median"))
