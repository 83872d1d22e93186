"""CDVAE's and DiffCSP's own evaluation code (`scripts/compute_metrics.py`), loaded to compare with.

The code is read from a source folder (`--cdvae-src`, `--diffcsp-src`) or from the mirror
tarball (`$GENCSP_UPSTREAM_MIRROR` or `../shared/upstream`, `OWNER/REPO/archive/COMMIT.tar.gz`)
extracted into a temporary folder at run time; it is never copied into the project. Its classes (`Crystal`, `RecEval`,
`RecEvalBatch`, `GenEval`) and functions run unchanged; what they are given:

- stand-ins for modules that are not installed here and that the evaluation path never
  calls: `hydra` (config loading for the property model), `torch_scatter`, `cdvae.pl_data`
  (the property model's data set); `p_tqdm.p_map` is p_tqdm's own code (a pathos
  `ProcessPool(num_cpus).imap`, one item per task) without the progress bar, with the
  number of processes set by the caller (`processes`), so that both sides get the same;
- bridges to the library versions the scripts were written for: smact 2.x's
  `neutral_ratios` returned `(bool, ratios)` and its `pauling_test` raised TypeError on a
  missing electronegativity (smact >= 3 returns the list, and False); matminer < 0.9's
  Magpie did not impute NaN (the scripts' `ElementProperty.from_preset('magpie')`).
  docs/metrics.md §1 records both facts. The evaluators' tqdm progress bars are not shown.

`main()` of the scripts reads a hydra config and torch files; `recon`, `recon_at_k` and
`generate` below are the lines of `main()` that run on the crystals, in its order.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import tarfile
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the upstream mirror the image builds use (GENCSP_UPSTREAM_MIRROR), else ../shared/upstream
MIRROR = Path(os.environ.get("GENCSP_UPSTREAM_MIRROR")
              or Path(os.environ.get("GENCSP_SHARED", ROOT.parent / "shared")) / "upstream")
SOURCES = {  # name: (mirror path, package imported by eval_utils)
    "cdvae": ("txie-93/cdvae/archive/f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea.tar.gz", "cdvae"),
    "diffcsp": ("jiaor17/DiffCSP/archive/7121d159826efa2ba9500bf299250d96da37f146.tar.gz", "diffcsp"),
}
PROCESSES = {"n": None}  # p_map's num_cpus (None: every CPU, as p_tqdm)


def source(name: str, folder: str | Path | None = None) -> Path:
    """The repository folder: `folder`, or the mirror tarball extracted to a temporary folder."""
    if folder:
        return Path(folder)
    tarball = MIRROR / SOURCES[name][0]
    if not tarball.is_file():
        raise SystemExit(f"{tarball}: not found; give the {name} source folder on the command line")
    target = Path(tempfile.mkdtemp(prefix=f"gencsp-{name}-"))
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers() if "/scripts/" in m.name or f"/{SOURCES[name][1]}/common/" in m.name
                   or m.name.endswith(f"/{SOURCES[name][1]}/__init__.py")]
        archive.extractall(target, members, filter="data")
    return next(target.iterdir())


# --- stand-ins and bridges -----------------------------------------------------------------


def p_map(function, *iterables, **kwargs):
    """p_tqdm.p_map: pathos ProcessPool(num_cpus).imap, in order, then pool.clear()."""
    from multiprocessing import cpu_count

    from pathos.pools import ProcessPool

    num_cpus = kwargs.pop("num_cpus", None) or PROCESSES["n"] or cpu_count()
    pool = ProcessPool(num_cpus)
    result = list(pool.imap(function, *iterables))
    pool.clear()
    return result


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _unused(*args, **kwargs):
    raise RuntimeError("not available in this comparison (property model / config loading)")


def _old_pauling_test(oxidation_states, electronegativities, symbols=None, repeat_anions=True,
                      repeat_cations=True, threshold=0.0):
    """smact 2.x pauling_test with its defaults: eneg_states_test, a None electronegativity raises TypeError."""
    for (ox1, eneg1), (ox2, eneg2) in itertools.combinations(list(zip(oxidation_states, electronegativities, strict=True)), 2):
        if ((ox1 > 0) and (ox2 < 0) and (eneg1 >= eneg2)) or ((ox1 < 0) and (ox2 > 0) and (eneg1 <= eneg2)):
            return False
    return True


def _smact_2():
    """smact with 2.x's neutral_ratios -> (any neutral, ratios)."""
    import smact

    bridged = _module("smact", **smact.__dict__)
    bridged.__name__ = "smact_2x_bridge"  # registered: the pool's workers look it up by name
    sys.modules[bridged.__name__] = bridged

    def neutral_ratios(oxidations, stoichs=False, threshold=5):
        ratios = smact.neutral_ratios(oxidations, stoichs=stoichs or None, threshold=threshold)
        return len(ratios) > 0, ratios

    bridged.neutral_ratios = neutral_ratios
    return bridged


def _install_stand_ins(package: str) -> None:
    hydra = _module("hydra", utils=_module("hydra.utils", instantiate=_unused), initialize_config_dir=_unused)
    hydra.experimental = _module("hydra.experimental", compose=_unused)
    sys.modules.update({
        "hydra": hydra, "hydra.experimental": hydra.experimental, "hydra.utils": hydra.utils,
        "torch_scatter": _module("torch_scatter", scatter=_unused, segment_coo=_unused, segment_csr=_unused),
        "p_tqdm": _module("p_tqdm", p_map=p_map, p_umap=p_map),
        f"{package}.pl_data": _module(f"{package}.pl_data"),
        f"{package}.pl_data.dataset": _module(f"{package}.pl_data.dataset", TensorCrystDataset=_unused),
        f"{package}.pl_data.datamodule": _module(f"{package}.pl_data.datamodule", worker_init_fn=_unused),
    })


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load(name: str, folder: str | Path | None = None) -> types.ModuleType:
    """`scripts/compute_metrics.py` of `name` (cdvae | diffcsp) as module `<name>_compute_metrics`."""
    import warnings

    from matminer.featurizers.composition.composite import ElementProperty

    warnings.filterwarnings("ignore")
    repo = source(name, folder)
    package = SOURCES[name][1]
    _install_stand_ins(package)
    sys.path.insert(0, str(repo))
    try:
        for stale in [m for m in sys.modules if m == "eval_utils" or m == package or m.startswith(f"{package}.common")]:
            del sys.modules[stale]
        # a name of its own (the two repositories' eval_utils differ); the scripts import it as eval_utils
        utils = sys.modules["eval_utils"] = _load(repo / "scripts" / "eval_utils.py", f"{name}_eval_utils")
        utils.smact, utils.pauling_test = _smact_2(), _old_pauling_test
        module = _load(repo / "scripts" / "compute_metrics.py", f"{name}_compute_metrics")
    finally:
        sys.path.remove(str(repo))
        sys.modules.pop("eval_utils", None)
    module.CompFP = ElementProperty.from_preset("magpie", impute_nan=False)
    module.tqdm = lambda iterable, **kwargs: iterable  # the evaluators' progress bars: output only
    module.eval_utils = utils
    return module


# --- the lines of main() that run on crystals ---------------------------------------------


def crystals(module, arrays: list[dict]) -> list:
    return module.p_map(lambda x: module.Crystal(x), arrays)


def recon(module, pred_arrays: list[dict], gt_arrays: list[dict]) -> dict:
    """CDVAE `--tasks recon` / DiffCSP `csp` (one sample per target): RecEval on (prediction, truth) pairs."""
    pred_crys = crystals(module, pred_arrays)
    gt_crys = crystals(module, gt_arrays)
    return module.RecEval(pred_crys, gt_crys).get_metrics()


def recon_at_k(module, pred_arrays: list[list[dict]], gt_arrays: list[dict]) -> dict:
    """DiffCSP `--multi_eval`: gt crystals, then each of the k batches, then RecEvalBatch."""
    gt_crys = crystals(module, gt_arrays)
    pred_crys = [crystals(module, batch) for batch in pred_arrays]
    return module.RecEvalBatch(pred_crys, gt_crys).get_metrics()


def generate(module, gen_arrays: list[dict], gt_arrays: list[dict], kind: str, seed: int = 0) -> dict:
    """CDVAE `--tasks gen` without the property model (wdist_prop needs its checkpoint): GenEval's
    metrics in get_metrics' order; np.random seeded (the script draws its subset unseeded)."""
    import numpy as np

    gen_crys = crystals(module, gen_arrays)
    gt_crys = crystals(module, gt_arrays)
    np.random.seed(seed)
    evaluator = module.GenEval(gen_crys, gt_crys, eval_model_name=kind)
    metrics = {}
    for part in ("validity", "comp_diversity", "struct_diversity", "density_wdist", "num_elem_wdist", "coverage"):
        metrics.update(getattr(evaluator, f"get_{part}")())
    return {k: float(v) for k, v in metrics.items()}


def arrays_of_cif(text: str) -> dict:
    """What the scripts read from their .pt files for one crystal, from a CIF: the cell parameters
    as written (pymatgen's CIF parser builds its lattice from them with Lattice.from_parameters),
    the parsed fractional coordinates and atomic numbers."""
    import numpy as np
    from pymatgen.io.cif import CifParser, str2float

    parser = CifParser.from_str(text)
    block = next(iter(parser._cif.data.values()))
    structure = parser.parse_structures(primitive=False)[0]
    keys = ("_cell_length_a", "_cell_length_b", "_cell_length_c", "_cell_angle_alpha", "_cell_angle_beta",
            "_cell_angle_gamma")
    cell = [str2float(block.data[k]) for k in keys]
    return {"frac_coords": np.array(structure.frac_coords), "atom_types": np.array([s.Z for s in structure.species]),
            "lengths": np.array(cell[:3]), "angles": np.array(cell[3:])}
