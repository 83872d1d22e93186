"""Report section: METRe, polymorph-aware and de-duplicated matching, and the stability ensemble.

These numbers sit beside the classic ones (leaderboard, figures), each with its definition;
they never replace the reference profiles' numbers. Values come from `metrics/summary.json`
(gencsp evaluate, gencsp profile) and `relax/ensemble.json` (gencsp relax with two or more
engines); nothing is computed here.
"""

from __future__ import annotations

import json

from . import html

ANCHOR, TITLE = "field", "METRe, polymorphs, duplicates and the stability ensemble"
CSP_KEYS = ("match_rate@{k}", "metre@{k}", "polymorph_match_rate@{k}", "match_or_polymorph_rate@{k}",
            "dedup.duplicate_targets", "dedup.match_rate@{k}", "dedup.metre@{k}", "dedup.polymorph_match_rate@{k}",
            "crmse@{k}", "metre_crmse@{k}", "dedup.crmse@{k}")
GENERATE_KEYS = ("metre", "metre_rms_dist", "metre_crmse", "dedup.duplicate_references", "dedup.metre",
                 "dedup.metre_crmse")
ENSEMBLE_KEYS = ("stable_rate@0.0eV", "metastable_rate@0.1eV")


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _matching(runs, task: str) -> list[str]:
    members = [r for r in runs if r.task == task and r.entry.summary]
    if not members:
        return []
    templates = CSP_KEYS if task == "csp" else GENERATE_KEYS
    rows, described = [], {}
    for run in members:
        summary, k = run.entry.summary, run.entry.k
        keys = [t.format(k=k) for t in templates]
        rows.append([run.label, *(_fmt(summary.get(key)) for key in keys)])
        for template, key in zip(templates, keys, strict=True):
            text = (run.entry.provenance.get("metrics") or {}).get(key, {}).get("description")
            if text:
                described.setdefault(template.replace("{k}", "k"), text)
    headers = ["run", *(t.replace("{k}", "k") for t in templates)]
    title = "CSP: matches, METRe, polymorphs, de-duplicated targets" if task == "csp" else \
        "Generation: METRe over the reference crystals, de-duplicated"
    return [html.heading(3, title), html.table(headers, rows, described, css="board"),
            html.definitions(list(described.items()))]


def _ensemble(run) -> dict | None:
    path = run.entry.path / "relax" / "ensemble.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _stability(runs) -> list[str]:
    out = [html.heading(3, "Stability ensemble of ML potentials")]
    found = [(r, e) for r in runs if (e := _ensemble(r)) is not None]
    if not found:
        return out + [html.paragraph("No ensemble yet: `gencsp relax RUN --engine chgnet,sevennet` relaxes with "
                                     "each potential and scores each against its own hull.", "muted")]
    for run, result in found:
        rows = []
        for e in result["engines"]:
            ident = e["identity"]
            rows.append([e["engine"], *(_fmt(e[k]) for k in ENSEMBLE_KEYS), e["samples_with_value"],
                         f"{ident.get('package')} {ident.get('version')}, {ident.get('model')}",
                         str(ident.get("checkpoint_sha256"))[:16], e.get("reference") or "-"])
        ens = result["ensemble"]
        rows.append(["ensemble (per-sample mean)", *(_fmt(ens[k]) for k in ENSEMBLE_KEYS),
                     ens["samples_with_value"], "", "", ""])
        rows.append(["potentials: mean ± std", *(f"{_fmt(ens[f'engine_mean.{k}'])} ± {_fmt(ens[f'engine_std.{k}'])}"
                                                 for k in ENSEMBLE_KEYS), "", "", "", ""])
        out += [html.paragraph(f"{run.label}: {result['samples_requested']} requested samples. Spread between "
                               f"potentials (std of the energy above hull over potentials, per sample): mean "
                               f"{_fmt(ens['e_above_hull_std_mean'])}, median {_fmt(ens['e_above_hull_std_median'])}"
                               f", max {_fmt(ens['e_above_hull_std_max'])} eV/atom."),
                html.table(["potential", *ENSEMBLE_KEYS, "samples with E_hull", "package, model",
                            "checkpoint sha256", "hull reference"], rows, numeric=False)]
    out.append(html.definitions([
        ("stable_rate@0.0eV", "requested samples with energy above hull <= 0.0 eV/atom (stable; LeMat-GenBench, "
                              "Matbench Discovery)"),
        ("metastable_rate@0.1eV", "requested samples with energy above hull <= 0.1 eV/atom (metastable; MatterGen's "
                                  "S.U.N.)"),
        ("ensemble", found[0][1]["definition"] + "; a sample without a value counts as not stable"),
        ("checkpoint sha256", "of the exact checkpoint file each potential loaded: a changed default checkpoint "
                              "changes it")]))
    return out


def section(runs) -> list[str]:
    out = [html.heading(2, TITLE, ANCHOR),
           html.paragraph("Metrics that later work argued for, beside the classic ones above (which they never "
                          "replace): METRe and its cRMSE (Martirossyan et al., arXiv:2509.12178), matches to a "
                          "polymorph of the target counted apart, rates over de-duplicated targets, and stability "
                          "from several ML potentials with their spread.")]
    for task in ("csp", "generate"):
        out += _matching(runs, task)
    return out + _stability(runs)
