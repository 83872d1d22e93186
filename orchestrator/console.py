"""Shared rich consoles: tables and progress on stdout, diagnostics on stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Piped output (logs, CI, tests) gets at least 160 columns instead of rich's 80-column
# default (some tools export COLUMNS=80), so that names in tables are not folded.
_WIDTH = None if sys.stdout.isatty() else max(160, int(os.environ.get("COLUMNS") or 0))

out = Console(width=_WIDTH, soft_wrap=True)
err = Console(stderr=True, width=_WIDTH, soft_wrap=True)


def table(title: str, columns: list[str], rows: list[list], **kwargs):
    from rich.table import Table

    t = Table(title=title, **kwargs)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t
