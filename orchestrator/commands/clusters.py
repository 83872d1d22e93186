"""gencsp clusters list | show NAME: the SLURM profiles (shipped + ~/.config/gencsp/clusters.yaml)."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("clusters", help="SLURM cluster profiles: list, show")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("list", help="every profile, where it comes from, what it still needs").set_defaults(
        func=cmd_list)
    show = verbs.add_parser("show", help="every value of a profile, and an example job script")
    show.add_argument("name")
    show.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a value")
    show.add_argument("--script", action="store_true", help="print the job script of a 2-shard example run")
    show.set_defaults(func=cmd_show)


def missing_values(profile) -> list[str]:
    needs = []
    if profile.account_required and not profile.account:
        needs.append("account")
    if profile.time_required and profile.time is None:
        needs.append("time")
    return needs


def cmd_list(args) -> int:
    from .. import clusters
    from ..console import out, table

    profiles, sources = clusters.load(), clusters.sources()
    rows = []
    for name, p in profiles.items():
        where = " ".join(f"{k}={v}" for k, v in (("partition", p.partition), ("constraint", p.constraint),
                                                 ("qos", p.qos), ("clusters", p.cluster)) if v)
        rows.append([name, sources.get(name, ""), p.account_flag() or "", where, p.gpus_per_task,
                     ", ".join(missing_values(p)) or "-", p.description])
    out.print(table("cluster profiles", ["name", "from", "account", "where", "gpus", "needs", "description"], rows))
    out.print(f"user file: {clusters.user_file()}" + ("" if clusters.user_file().is_file() else " (none yet)"),
              highlight=False)
    return 0


def example_script(profile) -> str:
    from pathlib import Path

    from ..executors.slurm_array import Resources, Task, render_script

    run = Path("/path/to/runs/RUN")
    tasks = [Task(f"gencsp run-shard {run} {k} --runtime {profile.runtime or 'auto'}",
                  log=run / "shards" / f"{k:04d}" / "slurm-%A_%a.log") for k in range(2)]
    resources = Resources(cpus=1, gpus=profile.gpus_per_task, memory_gb=8, seconds=3600)
    return render_script(tasks, run / "slurm", profile, resources, name="gencsp-MODEL")


def cmd_show(args) -> int:
    from .. import clusters
    from ..console import out, table

    profile = clusters.get(args.name, clusters.parse_overrides(args.overrides))
    rows = [[key, "" if value in (None, [], {}) else value] for key, value in profile.as_dict().items()]
    out.print(table(f"profile {profile.name}", ["key", "value"], rows))
    if needs := missing_values(profile):
        out.print(f"[yellow]still needed before submitting:[/] {', '.join(needs)} — add them under "
                  f"`{profile.name}:` in {clusters.user_file()} or pass --set KEY=VALUE", highlight=False)
    if args.script:
        shown = profile if not needs else clusters.get(
            args.name, {"account": "PROJECT", "time": "02:00:00", **clusters.parse_overrides(args.overrides)})
        out.print(example_script(shown), highlight=False, markup=False, soft_wrap=True)
    return 0
