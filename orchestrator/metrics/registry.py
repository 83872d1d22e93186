"""One registry of metrics (name, description, function, direction, task, profiles).

A metric is a pure function of an evaluation `Context` returning a number (or
None when it is not defined on these inputs, with a note saying why, or `SKIP`
to leave it out). A profile is the list of metrics it reports and the key each
gets in its JSON: the reference profiles use the reference scripts' own keys,
the gencsp profile prefixes the reference numbers with `cdvae.`/`diffcsp.` and
reports its corrected metrics under their own names, side by side.

A metric declares the per-crystal inputs it reads (`needs`): for each side, the parts
of its records (fingerprints.PARTS; an empty tuple: the facts only, i.e. parsing,
composition, SMACT, geometry). Sides: `pred` (every prediction), `ref` (every crystal
of the reference set), `truth` (the reference crystals of the predicted CSP targets).
The evaluation computes the union over the requested metrics and nothing else: no
crystal is fingerprinted that no requested metric reads. `needs` may be a function
of the evaluation context (what a metric reads can depend on k, or on a run's files).
A metric that declares nothing reads everything (every part of both sides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

PROFILES = ("cdvae", "diffcsp", "gencsp")
DIRECTIONS = ("higher", "lower", "none")
METRIC_MODULES = ("generate_metrics", "csp_metrics", "metre_metrics", "cost_metrics", "stability_metrics",
                  "ensemble_metrics")
SKIP = object()  # a metric that does not apply to these inputs (e.g. @k with one sample per target)
SIDES = ("pred", "ref", "truth")
FINGERPRINTS = ("struct_fp", "comp_fp")
EVERYTHING = {"pred": ("struct_fp", "comp_fp", "spacegroup"), "ref": ("struct_fp", "comp_fp", "spacegroup")}


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    function: Callable
    direction: str  # higher | lower is better; none for counts and settings
    task: str  # generate | csp | any
    keys: dict[str, str] = field(default_factory=dict)  # profile -> JSON key ("{k}" is filled in)
    needs: dict | Callable | None = None  # side -> record parts read (None: everything)

    def inputs(self, ctx) -> dict:
        needs = self.needs(ctx) if callable(self.needs) else self.needs
        return EVERYTHING if needs is None else needs

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.keys)


REGISTRY: dict[str, Metric] = {}


def metric(name: str, description: str, direction: str, task: str, keys: dict[str, str],
           needs: dict | Callable | None = None):
    """Register the decorated function as a metric."""
    if direction not in DIRECTIONS:
        raise ValueError(f"{name}: direction must be one of {DIRECTIONS}")
    unknown = set(keys) - set(PROFILES)
    if unknown:
        raise ValueError(f"{name}: unknown profile(s) {sorted(unknown)}")
    if isinstance(needs, dict) and set(needs) - set(SIDES):
        raise ValueError(f"{name}: needs sides among {SIDES}")

    def register(function):
        if name in REGISTRY:
            raise ValueError(f"metric {name!r} registered twice")
        REGISTRY[name] = Metric(name, description, function, direction, task, dict(keys), needs)
        return function

    return register


def reference_keys(key: str, *profiles: str) -> dict[str, str]:
    """A reference-script number: its own key in its profile(s), prefixed in the gencsp profile."""
    return {**{p: key for p in profiles}, "gencsp": f"{profiles[0]}.{key}"}


def load() -> dict[str, Metric]:
    """The registry with every metric module imported."""
    import importlib

    for module in METRIC_MODULES:  # importing registers; this order is the order of the reports
        importlib.import_module(f"{__package__}.{module}")

    return REGISTRY


def profile_metrics(profile: str, task: str) -> list[tuple[str, Metric]]:
    """(JSON key template, metric) of a profile for a task, in registration order."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    return [(m.keys[profile], m) for m in load().values() if m.task in (task, "any") and profile in m.keys]


def union_of_needs(metrics, ctx) -> dict[str, set[str]]:
    """side -> every record part that one of `metrics` reads (a side no metric reads is absent)."""
    out: dict[str, set[str]] = {}
    for metric_ in metrics:
        for side, parts in metric_.inputs(ctx).items():
            out.setdefault(side, set()).update(parts)
    return out
