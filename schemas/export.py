"""Export the contract as JSON Schema files: `python -m schemas.export [--check]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .contract import CONTRACT_VERSION, Manifest, SampleRequest, Target, TrainRequest
from .model_card import ModelCard

JSON_DIR = Path(__file__).parent / "json"
EXPORTED = {
    "sample_request": SampleRequest,
    "target": Target,
    "manifest": Manifest,
    "train_request": TrainRequest,
    "model_card": ModelCard,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every exported schema."""
    out = {}
    for name, model in EXPORTED.items():
        schema = model.model_json_schema()
        schema["$id"] = f"https://gencsp.dev/schemas/{CONTRACT_VERSION}/{name}.schema.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Names of schema files that differ from the export (or are missing or extra)."""
    want = render()
    have = {p.name for p in directory.glob("*.schema.json")}
    bad = [n for n, text in want.items() if not (directory / n).exists() or (directory / n).read_text() != text]
    return sorted(bad + [n for n in have - set(want)])


def write(directory: Path = JSON_DIR) -> None:
    from orchestrator.atomic import write_text

    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        write_text(directory / name, text)
    for extra in {p.name for p in directory.glob("*.schema.json")} - set(render()):
        (directory / extra).unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            print(f"stale schema files in {JSON_DIR}: {', '.join(bad)}; run `python -m schemas.export`")
            return 1
        return 0
    write()
    print(f"wrote {len(EXPORTED)} schemas to {JSON_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
