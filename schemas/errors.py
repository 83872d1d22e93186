"""Readable validation errors: one `$.json.path: message` line per problem."""

from __future__ import annotations


def json_path(location: tuple) -> str:
    path = "$"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def format_errors(exc, limit: int = 20) -> str:
    """Lines for a pydantic ValidationError, at most `limit` of them."""
    errors = exc.errors()
    lines = [f"  {json_path(e['loc'])}: {e['msg']}" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more")
    return "\n".join(lines)
