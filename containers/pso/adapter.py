"""pso: particle-swarm search (pso.py, after CALYPSO) of each target's structure, relaxed with CHGNet.

One search per target; sample i is the i-th lowest-energy distinct structure it
relaxed. The search stops after `generations` (or at the request's budget).
"""

import gencsp_helper as g

MODEL = {"name": "pso", "version": "1"}


def fraction_done(meter, session, swarm, generations):
    """How far the search is (0..1): of the budget when there is one, else of the generations."""
    budget = session.budget
    if budget.get("evaluations"):
        return meter.evaluations / float(budget["evaluations"])
    if budget.get("seconds"):
        return meter.compute_seconds() / float(budget["seconds"])
    return swarm.generation / float(max(1, generations))


def search(session, target, rng):
    import csp_search as cs
    from pso import Swarm
    from pymatgen.analysis.structure_matcher import StructureMatcher

    options = session.options
    potential = cs.potential(session.device)
    found = cs.Found()
    generations = None if session.budget else int(options["generations"])
    matcher = StructureMatcher()
    with session.search(target) as meter:
        potential.meter = meter

        def draw():
            with meter.timing("sampling"):
                return cs.random_structure(target, rng, options)

        def relax(structure):
            return potential.relax(structure, options) if cs.can_relax(meter) else None

        swarm = Swarm(options, rng, draw, relax, lambda: fraction_done(meter, session, swarm, generations),
                      lambda energy, structure: found.add(energy, structure, meter.progress()), matcher.fit)
        swarm.run(generations)
        if not len(found):
            raise RuntimeError("the budget allowed no relaxation")
        cs.answer(meter, found, int(target.get("samples", 1)))


def sample(session):
    import csp_search as cs
    import numpy as np

    if session.task != "csp":
        raise g.ContractError("pso only does csp")
    cs.one_thread()
    for target in session.targets:
        search(session, target, np.random.default_rng(session.seed_for(target, 0)))


if __name__ == "__main__":
    g.main(sample, model=MODEL)
