"""gencsp new-model NAME: scaffold containers/NAME/."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("new-model", help="scaffold a model folder that passes check-image")
    parser.add_argument("name")
    parser.set_defaults(func=cmd_new_model)


def cmd_new_model(args) -> int:
    from ..console import out
    from ..scaffold import new_model

    folder = new_model(args.name)
    out.print(f"created {folder}: edit model.yaml and adapter.py, then `gencsp build {args.name}` and "
              f"`gencsp check-image {args.name}`", highlight=False)
    return 0
