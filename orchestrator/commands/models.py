"""gencsp models list"""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("models", help="model folders under containers/")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("list", help="every model and what it supports").set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from .. import models
    from ..console import out, table

    rows = []
    for name, card in models.cards().items():
        limits = card.limits
        notes = []
        if limits.space_groups:
            notes.append(f"{len(limits.space_groups)} space groups")
        if limits.max_elements:
            notes.append(f"<= {limits.max_elements} elements")
        if limits.max_atoms:
            notes.append(f"<= {limits.max_atoms} atoms")
        rows.append([
            name, card.family, ", ".join(card.tasks), card.output,
            ", ".join(card.requires) or "-", card.resources.gpu,
            "public" if card.checkpoint and card.checkpoint.public else ("train" if card.trainable else "-"),
            "; ".join(notes) or "-", card.licence,
        ])
    out.print(table("models", ["name", "family", "tasks", "output", "oracle needed", "GPU", "weights",
                               "limits", "licence"], rows))
    return 0
