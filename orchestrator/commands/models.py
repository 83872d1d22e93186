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
    built = built_images()
    for name, card in models.cards().items():
        limits = card.limits
        notes = []
        if limits.space_groups:
            notes.append(f"{len(limits.space_groups)} space groups")
        if limits.min_elements and limits.min_elements == limits.max_elements:
            notes.append(f"exactly {limits.max_elements} elements")
        elif limits.min_elements or limits.max_elements:
            notes.append(f"{limits.min_elements or 1}-{limits.max_elements or 'any'} elements")
        if limits.elements:
            notes.append(f"{len(limits.elements)}-element vocabulary")
        if limits.max_atoms:
            notes.append(f"<= {limits.max_atoms} atoms")
        rows.append([
            name, card.family, ", ".join(card.tasks), card.output,
            ", ".join(card.requires) or "-", card.resources.gpu,
            "public" if card.checkpoint and card.checkpoint.public else ("train" if card.trainable else "-"),
            "; ".join(notes) or "-", variants_text(card, built), card.licence,
        ])
    models_table = table("models", ["name", "family", "tasks", "output", "oracle needed", "GPU", "weights",
                                     "limits", "images (* built here)", "licence"], rows)
    for column in models_table.columns:
        column.overflow = "fold"  # long licences and limits wrap instead of being cut
    out.print(models_table)
    return 0


def built_images() -> set[str] | None:
    """Image references present in the local Docker engine; None when no daemon answers."""
    from .. import images

    try:
        client = images.client(timeout=5)
    except images.ImageError:
        return None
    return {tag for image in client.images.list() for tag in image.tags}


def variants_text(card, built: set[str] | None) -> str:
    """`cpu*, cuda`: the card's image variants, starred where built here (`?`: no Docker to ask)."""
    names = list(card.variants) or [None]
    parts = []
    for variant in names:
        reference = card.with_variant(variant).image_name
        if ":" not in reference.rsplit("/", 1)[-1]:
            reference += ":latest"
        mark = "?" if built is None else ("*" if reference in built else "")
        parts.append(f"{variant or 'image'}{mark}")
    return ", ".join(parts)
