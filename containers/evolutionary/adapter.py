"""evolutionary: CrySPY's evolutionary algorithm (csp-cryspy, interactive mode) with CHGNet as its ASE calculator.

One CrySPY run per target, in a scratch folder: PyXtal random symmetric first
generation, then crossover, permutation, strain and random children selected by
tournament, each relaxed with CHGNet (FIRE on a FrechetCellFilter, no symmetry
constraint: the relaxation of random_search). CrySPY's code is used unchanged;
the adapter only counts its calculator's calls, times its relaxations and stops
it at the request's budget (or after `generations`). Sample i is the i-th
lowest-energy distinct structure it relaxed.
"""

import os
import shutil
import tempfile
import time

import gencsp_helper as g

MODEL = {"name": "evolutionary", "upstream": {"repo": "https://github.com/Tomoki-YAMASHITA/CrySPY", "commit": "1.5.0"}}

CRYSPY_IN = """[basic]
algo = EA
calc_code = ASE
nstage = 1
njob = 1
jobcmd = none
jobfile = none

[structure]
atype = {atype}
nat = {nat}
vol_factor = {volume_factor}
{space_groups}
[ASE]
ase_python = none

[EA]
n_pop = {population}
n_crsov = {crossover}
n_perm = {permutation}
n_strain = {strain}
n_rand = {random}
n_elite = {elite}
n_fittest = {fittest}
slct_func = TNM
t_size = {tournament}
maxgen_ea = {generations}

[option]
seed = {seed}
energy_output_interval = 0
rslt_out = off
"""


def children(options, elements):
    """How CrySPY's generations are made: n_pop = crossover + permutation + strain + random
    (no permutation of a single element: those children become random ones)."""
    population = int(options["population"])
    parts = {k: int(options[k]) for k in ("crossover", "permutation", "strain")}
    if elements < 2:
        parts["permutation"] = 0
    parts["random"] = population - sum(parts.values())
    if parts["random"] < 0:
        raise ValueError(f"crossover + permutation + strain exceed the population ({population})")
    return parts


def cryspy_input(target, options, seed, generations):
    import csp_search as cs

    species, counts = cs.species_counts(target)
    groups = options.get("space_groups")
    return CRYSPY_IN.format(
        atype=" ".join(species), nat=" ".join(map(str, counts)), volume_factor=options["volume_factor"],
        space_groups="spgnum = {}\n".format(" ".join(map(str, groups))) if groups else "",
        population=options["population"], elite=options["elite"], fittest=options["fittest"],
        tournament=options["tournament"], generations=generations, seed=seed, **children(options, len(species)))


def patch_cryspy(meter_of, found):
    """Count and time CrySPY's relaxations (its opt_ase is wrapped, not changed); no notebook progress bar."""
    import cryspy.interactive.restart_interact as ri

    original = ri.__dict__.setdefault("_gencsp_opt_ase", ri.opt_ase)

    def opt_ase(work_path, structure, *args, **kwargs):
        meter = meter_of()
        with meter.timing("relax"):
            relaxed, energy, converged = original(work_path, structure, *args, **kwargs)
        if relaxed is not None:
            found.add(energy / len(relaxed), relaxed, meter.progress())
        return relaxed, energy, converged

    ri.opt_ase = opt_ase
    ri.tqdm = lambda items: items  # CrySPY's interactive mode wants ipywidgets for tqdm.notebook


def search(session, target, scratch, potential):
    import csp_search as cs

    options = session.options
    found = cs.Found()
    generations = 0 if session.budget else int(options["generations"])  # 0: CrySPY's "no limit"
    with session.search(target) as meter:
        potential.meter = meter
        patch_cryspy(lambda: meter, found)
        from cryspy.interactive import action

        folder = tempfile.mkdtemp(prefix=target["id"] + ".", dir=scratch)
        here = os.getcwd()
        os.chdir(folder)
        try:
            with open("cryspy.in", "w") as handle:
                handle.write(cryspy_input(target, options, session.seed_for(target, 0) % (2**31), generations))
            with meter.timing("sampling"):
                action.initialize()  # the first generation: PyXtal random structures
            while cs.can_relax(meter):
                before, relaxing, started = len(found), meter.relax_seconds, time.monotonic()
                try:
                    action.restart(njob=1, calculator=potential.calculator, optimizer="FIRE", symmetry=False,
                                   fmax=float(options["fmax"]),
                                   steps=cs.relax_steps(meter, int(options["relax_steps"])))
                except SystemExit as exc:  # CrySPY exits on errors it logged
                    raise RuntimeError(f"CrySPY stopped (exit {exc.code}): see its log in the shard log") from None
                # the rest of the call makes CrySPY's next generation (selection, crossover, mutations)
                meter.sampling_seconds += time.monotonic() - started - (meter.relax_seconds - relaxing)
                if len(found) == before and _finished():
                    break
        finally:
            os.chdir(here)
            shutil.rmtree(folder, ignore_errors=True)
        if not len(found):
            raise RuntimeError("CrySPY relaxed no structure (see the shard log)")
        cs.answer(meter, found, int(target.get("samples", 1)))


def _finished():
    """CrySPY has nothing left to relax: its queue is empty after a call (maxgen_ea reached)."""
    from cryspy.IO import pkl_data

    return not pkl_data.load_id_queueing()


def sample(session):
    import csp_search as cs

    if session.task != "csp":
        raise g.ContractError("evolutionary only does csp")
    cs.one_thread()
    scratch = session.path("/work")
    scratch = scratch if os.path.isdir(scratch) and os.access(scratch, os.W_OK) else tempfile.mkdtemp()
    logs = tempfile.mkdtemp(prefix="cryspy-log.", dir=scratch)
    os.chdir(logs)  # CrySPY opens log_cryspy and err_cryspy in the folder it is imported from
    import cryspy.interactive.action  # noqa: F401

    potential = cs.potential(session.device)
    for target in session.targets:
        search(session, target, scratch, potential)
    os.chdir(scratch)
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    g.main(sample, model=MODEL)
