"""`gencsp new-model NAME`: a model folder that passes `gencsp check-image` as it is."""

from __future__ import annotations

import re
from pathlib import Path

from . import paths
from .errors import GencspError

TEMPLATES = Path(__file__).parent / "templates" / "new_model"


def new_model(name: str, root: Path | None = None) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise GencspError(f"model name {name!r}: use lower case letters, digits and underscores")
    folder = (root or paths.CONTAINERS_DIR) / name
    if folder.exists():
        raise GencspError(f"{folder}: already exists")
    folder.mkdir(parents=True)
    for template in sorted(TEMPLATES.iterdir()):
        # plain replacement: the templates hold format strings of their own
        (folder / template.name).write_text(template.read_text().replace("{name}", name))
    return folder
