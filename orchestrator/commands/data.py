"""gencsp data list | fetch | show | add | dedup"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("data", help="list, fetch, inspect and add datasets")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    verbs.add_parser("list", help="the registered datasets").set_defaults(func=cmd_list)

    fetch = verbs.add_parser("fetch", help="download (or copy from $GENCSP_DATA_MIRROR) and verify splits")
    fetch.add_argument("name")
    fetch.add_argument("--split", action="append", help="split to fetch (repeatable; default: all)")
    fetch.set_defaults(func=cmd_fetch)

    show = verbs.add_parser("show", help="counts, elements, atoms per cell, space groups")
    show.add_argument("name")
    show.add_argument("--split", default="test")
    show.add_argument("--symprec", type=float, default=0.1)
    show.add_argument("--json", action="store_true", help="print JSON instead of tables")
    show.set_defaults(func=cmd_show)

    add = verbs.add_parser("add", help="register a folder of CIFs or a CSV with a 'cif' column")
    add.add_argument("name")
    add.add_argument("path", type=Path)
    add.add_argument("--split", default="test")
    add.add_argument("--kind", default="mp20", choices=("perovskite", "carbon", "mp20"),
                     help="selects the coverage cut-offs used by the metrics")
    add.add_argument("--skip-invalid", action="store_true", help="drop unreadable structures instead of failing")
    add.set_defaults(func=cmd_add)

    dedup = verbs.add_parser("dedup", help="duplicate structures within a split and across the other splits here",
                             description="StructureMatcher within the split and against every other split "
                                         "available without the network (or --against); writes the mapping "
                                         "(counts, groups, matches) under $GENCSP_HOME/dedup/, reused while "
                                         "the files, tolerances and pymatgen are unchanged.")
    dedup.add_argument("name")
    dedup.add_argument("--split", default="test")
    dedup.add_argument("--against", action="append", help="another split to compare with (repeatable; default: "
                                                          "every other split available here)")
    dedup.add_argument("--tolerance", default="strict", choices=("strict", "loose"),
                       help="strict: pymatgen defaults (ltol 0.2, stol 0.3, angle 5); loose: CDVAE's (0.3, 0.5, 10)")
    dedup.add_argument("--workers", type=int, help="processes (default: every core)")
    dedup.add_argument("--refresh", action="store_true", help="recompute even when a recorded mapping is current")
    dedup.add_argument("--json", action="store_true", help="print the mapping's counts as JSON")
    dedup.set_defaults(func=cmd_dedup)


def cmd_list(args) -> int:
    from .. import datasets
    from ..console import out, table

    rows = []
    for spec in datasets.registry().values():
        cached = [s for s in spec.splits if datasets.split_path(spec.name, s).exists()]
        rows.append([spec.name, spec.kind, ", ".join(spec.splits), ", ".join(cached) or "-", spec.origin,
                     spec.description])
    out.print(table("datasets", ["name", "kind", "splits", "cached", "origin", "description"], rows))
    return 0


def cmd_fetch(args) -> int:
    from .. import datasets
    from ..console import out
    from ..hashing import sha256_file

    spec = datasets.get(args.name)
    for split in args.split or spec.splits:
        path = datasets.fetch(args.name, split)
        _, why = datasets.expected_sha(spec, split)
        verified = "built locally" if spec.origin == "builtin" else f"sha256 verified ({why})"
        out.print(f"{args.name}/{split}: {path} sha256={sha256_file(path)} {verified}", highlight=False)
    return 0


def cmd_show(args) -> int:
    from .. import datasets
    from ..console import out, table
    from ..dataset_stats import summarize

    frame = datasets.load(args.name, args.split, progress=True)
    stats = summarize(frame, symprec=args.symprec)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    a = stats["atoms_per_cell"]
    out.print(table(f"{args.name}/{args.split}", ["quantity", "value"], [
        ["structures", stats["rows"]], ["unreadable", stats["unreadable"]],
        ["distinct elements", stats["elements"]],
        ["atoms per cell (min / median / mean / max)", f"{a['min']} / {a['median']:g} / {a['mean']:.2f} / {a['max']}"],
        ["distinct space groups", f"{stats['distinct_space_groups']} (symprec={args.symprec})"],
        ["property columns", ", ".join(stats["property_columns"]) or "-"],
    ]))
    top = list(stats["element_counts"].items())[:15]
    out.print(table("most common elements (structures containing them)", ["element", "structures"], top))
    groups = list(stats["space_groups"].items())[:15]
    out.print(table("space groups (top 15)", ["space group", "structures", "share"],
                    [[g, n, f"{n / max(stats['rows'], 1):.1%}"] for g, n in groups]))
    out.print(table("crystal systems", ["system", "structures"], list(stats["crystal_systems"].items())))
    return 0


def cmd_add(args) -> int:
    from .. import datasets
    from ..console import out

    dest = datasets.add(args.name, args.path, split=args.split, kind=args.kind, skip_invalid=args.skip_invalid)
    rows = sum(1 for _ in datasets.load(args.name, args.split)["material_id"])
    out.print(f"added {args.name}/{args.split}: {rows} structures -> {dest}", highlight=False)
    return 0


def cmd_dedup(args) -> int:
    from ..console import err, out, table
    from ..dedup import dedup_split

    mapping, path, cached = dedup_split(args.name, args.split, args.against, args.tolerance, args.workers,
                                        progress=err.is_terminal, refresh=args.refresh)
    if args.json:
        print(json.dumps({k: mapping[k] for k in ("counts", "seconds")} | {
            "across": {s: {k: v for k, v in a.items() if k != "matches"} for s, a in mapping["across"].items()}},
            indent=2))
        return 0
    c = mapping["counts"]
    rows = [["structures", c["structures"]], ["unreadable", c["unreadable"]],
            ["unique structures", f"{c['unique']} ({c['unique_fraction']:.1%})"],
            ["duplicates of an earlier structure", f"{c['duplicates']} ({c['duplicate_fraction']:.1%})"],
            ["groups with duplicates (largest)", f"{c['groups_with_duplicates']} ({c['largest_group']})"],
            ["unique structures with a polymorph in the split", c["unique_with_polymorph"]]]
    for other, a in mapping["across"].items():
        rows += [[f"structures also in {other}", f"{a['structures_also_there']} ({a['fraction_also_there']:.1%})"],
                 [f"unique structures with only a polymorph in {other}", a["unique_with_polymorph_there"]]]
    tol = mapping["inputs"]["tolerance"]
    title = (f"{args.name}/{args.split}: duplicates (StructureMatcher {tol['name']}: ltol {tol['ltol']}, "
             f"stol {tol['stol']}, angle {tol['angle_tol']})")
    out.print(table(title, ["", "value"], rows))
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in mapping["seconds"].items())
    out.print(f"{'recorded mapping (current, not recomputed)' if cached else 'computed'}: {seconds}; "
              f"{path}", highlight=False)
    return 0
