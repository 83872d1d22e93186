"""The upstream fetch step of every seed-model Dockerfile fails fast, saying GitHub is unreachable."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from test_adapter_common import CONTAINERS, SEED_MODELS

FETCH = CONTAINERS / "common" / "fetch_upstream.sh"


def fetch_step(dockerfile: str) -> str:
    """The shell of the `RUN gencsp-fetch-upstream ...` instruction, joined as Docker joins continued lines."""
    lines = dockerfile.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("RUN gencsp-fetch-upstream "))
    body = []
    for line in lines[start:]:
        body.append(line.rstrip("\\").rstrip())
        if not line.endswith("\\"):
            break
    return " ".join(body)[len("RUN "):].replace("gencsp-fetch-upstream", f"sh {FETCH}", 1)


@pytest.mark.parametrize("model", SEED_MODELS)
def test_fetch_fails_fast_with_a_message_where_github_is_unreachable(model, tmp_path):
    dockerfile = (CONTAINERS / model / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S*)$", dockerfile, re.M))
    env = {"PATH": "/usr/bin:/bin", **args, "GITHUB": "http://127.0.0.1:9"}  # a closed port stands in for GitHub
    start = time.monotonic()
    proc = subprocess.run(["bash", "-c", fetch_step(dockerfile)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert time.monotonic() - start < 15
    assert "GitHub is unreachable" in proc.stderr and f"gencsp build {model}" in proc.stderr
    assert args["UPSTREAM_COMMIT"] in proc.stderr  # names what it tried to fetch
