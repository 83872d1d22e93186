"""gencsp leaderboard and gencsp report on real runs of the `mini` dataset, and the report in headless Chromium.

The runs are made with the real `gencsp bench` (local runtime, evaluation
included): a CSP run of random search restricted to three cubic space groups
(so that VO2 fails: a model failure the report must list) and a generation run
of the replay baseline. A third CSP run stops before the evaluation.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import MIRROR, ROOT, need

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000")


def gencsp(env, *args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    env = {**os.environ, "GENCSP_HOME": str(base / "home"), "GENCSP_DATA_MIRROR": str(MIRROR), "COLUMNS": "200"}
    folder = base / "runs"
    common = ("--runtime", "local", "--run-dir", folder)
    gencsp(env, "bench", "--model", "random_search", "--dataset", "mini", "--samples-per-target", 2,
           "--option", "space_groups=[221,225,229]", *common)
    gencsp(env, "bench", "--model", "replay", "--dataset", "mini", "--task", "generate", "--option",
           "source_split=test", "--num-samples", 10, *common)
    (csp,), (generate,) = folder.glob("random_search-*-csp-s0-*"), folder.glob("replay-*")
    gencsp(env, "bench", "--model", "random_search", "--dataset", "mini", "--seed", 1, "--no-evaluate", *common)
    (unevaluated,) = folder.glob("random_search-*-csp-s1-*")
    return SimpleNamespace(env=env, base=base, folder=folder, csp=csp, generate=generate, unevaluated=unevaluated)


def summary(run: Path) -> dict:
    return json.loads((run / "metrics" / "summary.json").read_text())


# --- leaderboard ------------------------------------------------------------------------------------


def test_leaderboard_csv_carries_the_evaluated_numbers(runs):
    import csv
    import io

    text = gencsp(runs.env, "leaderboard", runs.csp, runs.generate, "--format", "csv")
    rows = {r["task"]: r for r in csv.DictReader(io.StringIO(text))}
    csp, generate = summary(runs.csp), summary(runs.generate)
    assert float(rows["csp"]["match_rate@k"]) == pytest.approx(csp["match_rate@2"])
    assert float(rows["csp"]["failed_fraction"]) == pytest.approx(csp["failed_fraction"])
    assert csp["failed_fraction"] > 0  # VO2 fits none of the three cubic groups
    assert float(rows["csp"]["wall_seconds_per_sample"]) == pytest.approx(csp["wall_seconds_per_sample"])
    assert float(rows["generate"]["cov_recall"]) == pytest.approx(generate["cdvae.cov_recall"])
    assert float(rows["generate"]["fd_crystalnn"]) == pytest.approx(generate["fd_crystalnn"])
    assert rows["csp"]["samples"] == "k=2" and rows["csp"]["oracle"] == "none"
    assert float(rows["csp"]["cpu_seconds_per_target"]) == pytest.approx(csp["cpu_seconds_per_target"])
    assert csp["cpu_seconds_per_target"] > 0
    assert [float(v) for v in rows["csp"]["match_rate_by_k"].split()] == pytest.approx(csp["match_rate_by_k"])
    assert csp["match_rate_by_k"][-1] == pytest.approx(csp["match_rate@2"])
    assert rows["csp"]["subset"] == "6 targets (all of mini/test)" and rows["csp"]["profile"] == "gencsp"


def test_leaderboard_of_a_runs_folder_in_every_format(runs):
    table = gencsp(runs.env, "leaderboard", "--runs-dir", runs.folder)
    assert "random_search [1]" in table and "replay [1]" in table and "not evaluated" in table
    assert "1 run(s) not evaluated yet" in table
    assert "Success against cost (CSP)" in table and "compute s/target" in table
    markdown = gencsp(runs.env, "leaderboard", "--runs-dir", runs.folder, "--format", "markdown", "--task", "csp")
    assert markdown.count("| random_search | mini/test |") == 2 and "replay" not in markdown
    assert "### Success against cost (CSP)" in markdown and "| @1 | @2 |" in markdown
    out = runs.base / "board.tex"
    gencsp(runs.env, "leaderboard", "--runs-dir", runs.folder, "--format", "latex", "--out", out)
    assert out.read_text().count(r"\begin{table}") == 2


def test_print_run_row_prints_one_row(runs, capsys):
    from orchestrator.leaderboard import print_run_row

    print_run_row(runs.csp)
    text = capsys.readouterr().out
    assert "random_search [1]" in text and "[2]" not in text and runs.csp.name in text


# --- report -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(runs):
    out = runs.base / "out" / "report.html"
    gencsp(runs.env, "report", runs.csp, runs.generate, runs.unevaluated, "--out", out, "--no-evaluate")
    return out


def test_report_is_self_contained(report):
    text = report.read_text()
    sources = re.findall(r'\bsrc="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'\bhref="([^"]*)"', text))
    assert "<script" not in text and "<link" not in text and "@import" not in text and "url(" not in text


def test_report_reads_without_the_json(runs, report):
    text = report.read_text()
    for needle in ("Runs and provenance", "Leaderboard", "Validity", "Match rate against the truth",
                   "Coverage and uniqueness", "Density", "Number of elements", "Space groups", "Crystal systems",
                   "Time per sample", "Failed samples", "Seconds per REQUESTED sample", "Share of ALL targets",
                   "Share of ALL requested samples", "headline subset", "symprec 0.1 Å", "Success against cost",
                   "Lines cost in total: random_search", "Match rate @k", "load average"):
        assert needle in text, needle
    info = json.loads((runs.csp / "run.json").read_text())
    assert info["dataset"]["sha256"] in text and f"gencsp {info['gencsp_version']}" in text
    assert "model_failed" in text and "no space group is compatible" in text  # VO2 in cubic groups only
    assert "Not evaluated (no metrics/): random_search, k=1" in text
    matched = summary(runs.csp)["match_rate@2"] > 0
    assert ("Target mini-" in text) == matched and ("No target was matched" in text) != matched


def test_figures_are_written_as_png_and_svg(report):
    from PIL import Image

    files = report.with_name("report_files")
    pngs = sorted(p.stem for p in files.glob("*.png"))
    assert pngs == sorted(p.stem for p in files.glob("*.svg"))
    assert {"csp-mini-test-validity", "csp-mini-test-match_rate", "csp-mini-test-success_vs_cost",
            "csp-mini-test-match_at_k", "generate-mini-test-coverage",
            "generate-mini-test-density", "generate-mini-test-space_groups", "time_per_sample"} <= set(pngs)
    for stem in pngs:
        with Image.open(files / f"{stem}.png") as image:
            assert image.width > 300 and image.height > 150
        assert ElementTree.parse(files / f"{stem}.svg").getroot().tag.endswith("svg")


def test_a_second_report_replaces_the_figures(runs, report):
    out = report.with_name("again.html")
    gencsp(runs.env, "report", runs.generate, "--out", out)
    names = {p.name for p in out.with_name("again_files").iterdir()}
    assert not any(n.startswith("csp-") for n in names) and "generate-mini-test-validity.png" in names


def test_one_runs_report_goes_into_the_run_folder(runs, tmp_path):
    run = tmp_path / runs.unevaluated.name
    shutil.copytree(runs.unevaluated, run)
    gencsp(runs.env, "report", run)  # evaluates it first (no --no-evaluate)
    assert (run / "metrics" / "summary.json").is_file()
    text = (run / "report.html").read_text()
    assert "Not evaluated" not in text and (run / "report_files" / "time_per_sample.svg").is_file()


def test_relaxed_runs_get_an_energy_above_hull_figure(runs, tmp_path):
    """A real CHGNet relaxation (gencsp relax); the hull reference is a stand-in for the Materials Project
    entries, out of reach here: one entry per element at -1 eV/atom. The figure is tested, not the numbers."""
    import pandas as pd
    from pymatgen.entries.computed_entries import ComputedEntry
    from pymatgen.io.cif import CifParser

    run = tmp_path / runs.generate.name
    shutil.copytree(runs.generate, run)
    elements = {el.symbol for cif in pd.read_parquet(run / "structures.parquet")["cif"]
                for el in CifParser.from_str(cif).parse_structures(primitive=False)[0].composition.elements}
    entries = tmp_path / "entries.json"
    entries.write_text(json.dumps([ComputedEntry(el, -1.0).as_dict() for el in sorted(elements)]))
    gencsp(runs.env, "relax", run, "--steps", 20, "--reference", "file", "--reference-entries", entries)
    table = pd.read_parquet(run / "relax" / "chgnet" / "stability.parquet")
    assert table["e_above_hull"].notna().all()
    out = tmp_path / "relaxed.html"
    gencsp(runs.env, "report", run, "--out", out)
    text = out.read_text()
    assert "Energy above the hull" in text and "Hull reference: entries file entries.json" in text
    assert (tmp_path / "relaxed_files" / "generate-mini-test-e_above_hull.svg").is_file()


# --- in a browser -----------------------------------------------------------------------------------


def chromium_driver(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


IMAGES = """return [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
    height: i.naturalHeight, shown: i.getBoundingClientRect().width}))"""
RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name)"


def test_report_renders_in_chromium(report, tmp_path_factory):
    need(shutil.which("chromium") is not None and shutil.which("chromedriver") is not None,
         "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        need(False, "selenium is not installed (pip install -e '.[dev]')")
    driver = chromium_driver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(IMAGES)
        expected = len(re.findall(r"<img ", report.read_text()))
        assert len(images) == expected >= 15
        broken = [i for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0 and i["shown"] > 0)]
        assert not broken, broken
        assert {"Success against cost", "Match rate @k"} <= {i["alt"] for i in images}  # rendered, not broken
        assert [r for r in driver.execute_script(RESOURCES) if not r.startswith("data:")] == []
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not errors, errors
        assert driver.title == "gencsp report"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, height)
        # GENCSP_REPORT_SCREENSHOT=path keeps it outside pytest's rotating temporary folders
        shot = Path(os.environ.get("GENCSP_REPORT_SCREENSHOT") or report.with_name("report-screenshot.png"))
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
