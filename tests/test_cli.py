"""The `gencsp` command as a user runs it."""

import subprocess
import sys
import time

from conftest import ROOT


def gencsp(*args, env=None):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_help_is_instant_and_lists_commands():
    start = time.monotonic()
    proc = gencsp("--help")
    assert proc.returncode == 0
    assert time.monotonic() - start < 3
    for command in ("data", "models", "validate", "bench"):
        assert command in proc.stdout


def test_heavy_libraries_are_not_imported_for_help():
    code = "import sys; from orchestrator.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('pandas', 'pymatgen', 'torch', 'matminer', 'docker') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_user_errors_are_one_line_without_traceback(home):
    import os

    proc = gencsp("data", "fetch", "nope", env=dict(os.environ))
    assert proc.returncode == 1
    assert "error: unknown dataset 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_models_list(home):
    proc = gencsp("models", "list")
    assert proc.returncode == 0 and "random_search" in proc.stdout and "replay" in proc.stdout


def test_bench_on_mini_end_to_end(home, tmp_path):
    import os

    import pandas as pd

    env = dict(os.environ)
    proc = gencsp("bench", "--model", "random_search", "--runtime", "local", "--run-dir", str(tmp_path / "r"), env=env)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "r").iterdir()
    frame = pd.read_parquet(run / "structures.parquet")
    assert len(frame) == 6 and (frame["status"] == "accepted").all()
    assert frame["composition_match"].all() and frame["num_atoms_match"].all()
    proc = gencsp("bench", "--model", "random_search", "--runtime", "local", "--run-dir", str(tmp_path / "r"), env=env)
    assert "resuming run" in proc.stdout.replace("\n", "")
