"""random_search: PyXtal random symmetric crystals of the target composition.

Without relaxation every sample is one random structure. With `relax: true` each
target gets one search: random structures relaxed with CHGNet until `trials` x k
relaxations (or the request's budget) are spent; sample i is the i-th lowest
energy distinct structure.
"""

import gencsp_helper as g

MODEL = {"name": "random_search", "upstream": {"repo": "https://github.com/MaterSim/PyXtal", "commit": "1.1.5"}}


def search(session, target, rng):
    import csp_search as cs

    options = session.options
    potential = cs.potential(session.device)
    found = cs.Found()
    k = int(target.get("samples", 1))
    with session.search(target) as meter:
        potential.meter = meter
        planned = None if session.budget else int(options["trials"]) * k
        while (planned is None or len(found) < planned) and cs.can_relax(meter):
            with meter.timing("sampling"):
                candidate = cs.random_structure(target, rng, options)
            energy, relaxed = potential.relax(candidate, options)
            found.add(energy, relaxed, meter.progress())
        if not len(found):
            raise RuntimeError("the budget allowed no relaxation" if session.budget
                               else "every relaxed trial gave a non-finite energy")
        cs.answer(meter, found, k)


def sample(session):
    import csp_search as cs
    import numpy as np

    if session.task != "csp":
        raise g.ContractError("random_search only does csp")
    if session.options.get("relax"):
        cs.one_thread()
        for target in session.targets:
            search(session, target, np.random.default_rng(session.seed_for(target, 0)))
        return
    for target, index in session.requested():
        with session.slot(target, index) as slot:
            rng = np.random.default_rng(session.seed_for(target, index))
            slot.cif(cs.cif_text(cs.random_structure(target, rng, session.options)))


if __name__ == "__main__":
    # Options arrive complete: the orchestrator merges model.yaml's default_options into the request.
    g.main(sample, model=MODEL)
