"""gencsp schemas export | check"""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("schemas", help="export the contract's JSON Schema files")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("export", help="write schemas/json/*.schema.json").set_defaults(func=cmd_export)
    verbs.add_parser("check", help="exit 1 if schemas/json is stale").set_defaults(func=cmd_check)


def cmd_export(args) -> int:
    from schemas import export

    return export.main([])


def cmd_check(args) -> int:
    from schemas import export

    return export.main(["--check"])
