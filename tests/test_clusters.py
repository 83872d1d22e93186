"""Cluster profiles: shipped defaults, the user file, per-run overrides, clear errors."""

from __future__ import annotations

import pytest

from orchestrator import clusters
from orchestrator.cli import main
from orchestrator.clusters import ProfileError, parse_minutes


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    path = tmp_path / "clusters.yaml"
    monkeypatch.setenv("GENCSP_CLUSTERS", str(path))
    return path


def test_shipped_profiles_hold_the_site_rules(user_file):
    profiles = clusters.load()
    assert {"local", "jean-zay-v100", "jean-zay-a100", "jean-zay-h100", "jean-zay-cpu", "glicid-nautilus"} <= set(profiles)
    h100 = profiles["jean-zay-h100"]
    assert (h100.constraint, h100.qos, h100.cpus_per_gpu, h100.hint) == ("h100", "qos_gpu_h100-t3", 24, "nomultithread")
    assert h100.module_purge and h100.modules == ("arch/h100", "singularity")  # arch first
    assert profiles["jean-zay-v100"].modules == ("singularity",)
    assert profiles["jean-zay-a100"].modules == ("arch/a100", "singularity")
    assert h100.sif_dir == "$SINGULARITY_ALLOWED_DIR" and not h100.request_memory
    glicid = profiles["glicid-nautilus"]
    assert glicid.cluster == "nautilus" and glicid.account_required and glicid.time_required
    assert glicid.modules == ("apptainer",) and glicid.shell == "/bin/sh"


def test_account_gets_the_jean_zay_suffix(user_file):
    assert clusters.get("jean-zay-h100", {"account": "abc"}).account_flag() == "abc@h100"
    assert clusters.get("jean-zay-a100", {"account": "abc"}).account_flag() == "abc@a100"
    assert clusters.get("jean-zay-h100", {"account": "xyz@h100"}).account_flag() == "xyz@h100"


def test_missing_account_and_time_are_named(user_file):
    with pytest.raises(ProfileError, match=r"(?s)jean-zay-h100: `account` is mandatory.*account: abc"):
        clusters.get("jean-zay-h100").require()
    with pytest.raises(ProfileError, match="`time` is mandatory"):
        clusters.get("glicid-nautilus", {"account": "proj"}).require()
    clusters.get("glicid-nautilus", {"account": "proj", "time": "02:00:00"}).require()


def test_user_file_updates_extends_and_keeps_times_as_text(user_file):
    user_file.write_text("jean-zay-h100:\n  account: abc\n  time: 02:00:00\n"
                         "  setup: ['. $WORK/venv/bin/activate']\n"
                         "mine:\n  extends: jean-zay-h100\n  qos: qos_gpu_h100-dev\n")
    h100 = clusters.get("jean-zay-h100")
    assert h100.account_flag() == "abc@h100" and h100.time == "02:00:00" and h100.time_minutes() == 120
    assert h100.constraint == "h100"  # shipped keys stay
    mine = clusters.get("mine")
    assert (mine.qos, mine.account, mine.cpus_per_gpu) == ("qos_gpu_h100-dev", "abc", 24)
    assert clusters.sources()["jean-zay-h100"] == "shipped+user" and clusters.sources()["mine"] == "user"


def test_typos_get_did_you_mean(user_file):
    with pytest.raises(ProfileError, match=r"unknown cluster profile 'jean-zay-h10' \(did you mean 'jean-zay-h100'\?\)"):
        clusters.get("jean-zay-h10")
    user_file.write_text("jean-zay-h100:\n  acount: abc\n")
    with pytest.raises(ProfileError, match=rf"{user_file}: profile 'jean-zay-h100': unknown key 'acount' \(did you mean 'account'\?\)"):
        clusters.load()
    user_file.unlink()
    with pytest.raises(ProfileError, match=r"unknown key 'cpus_per_gpus' \(did you mean 'cpus_per_gpu'\?\)"):
        clusters.get("local", {"cpus_per_gpus": "3"})
    user_file.write_text("x:\n  extends: jean-zay-h1000\n")
    with pytest.raises(ProfileError, match="extends unknown profile 'jean-zay-h1000'"):
        clusters.load()


def test_bad_values_are_refused(user_file):
    with pytest.raises(ProfileError, match="gpus_per_task: expected a number"):
        clusters.get("local", {"gpus_per_task": "two"})
    with pytest.raises(ProfileError, match="expected a SLURM time"):
        clusters.get("local", {"time": "2h"}).require()
    user_file.write_text("- not a mapping\n")
    with pytest.raises(ProfileError, match="expected a mapping"):
        clusters.load()


def test_overrides_from_the_command_line(user_file):
    values = clusters.parse_overrides(["account=abc", "modules=arch/h100,singularity", "poll_seconds=5"])
    profile = clusters.get("jean-zay-v100", values)
    assert profile.modules == ("arch/h100", "singularity") and profile.poll_seconds == 5.0
    with pytest.raises(ProfileError, match="key=value"):
        clusters.parse_overrides(["account"])


@pytest.mark.parametrize("text, minutes", [(90, 90), ("90", 90), ("5:30", 6), ("02:00:00", 120),
                                           ("1-00", 1440), ("1-02:30", 1590), ("0-00:00:59", 1)])
def test_slurm_time_formats(text, minutes):
    assert parse_minutes(text) == minutes


def test_computed_time_is_capped_by_the_qos(user_file):
    profile = clusters.get("jean-zay-h100", {"account": "abc"})
    assert profile.time_minutes(3600) == 70  # 60 + startup 10
    assert profile.time_minutes(10**6) == 20 * 60


def test_recorded_profile_reads_back(user_file):
    profile = clusters.get("jean-zay-h100", {"account": "abc"})
    assert clusters.from_dict(profile.as_dict()) == profile


def test_jean_zay_sif_steps_register_and_check_the_image(tmp_path):
    sif = tmp_path / "random_search.sif"
    sif.write_bytes(b"not really an image")
    from orchestrator.hashing import sha256_file

    text = clusters.sif_instructions("jean-zay", sif)
    lines = text.splitlines()
    assert "module load singularity" in lines
    assert "idrcontmgr cp $WORK/gencsp/images/random_search.sif" in lines
    assert f"echo '{sha256_file(sif)}  '$SINGULARITY_ALLOWED_DIR/random_search.sif | sha256sum -c -" in lines
    assert lines.index("module load singularity") < lines.index("idrcontmgr cp $WORK/gencsp/images/random_search.sif")
    assert "glicid-nautilus" in clusters.sif_instructions("glicid", sif)
    with pytest.raises(ProfileError, match="no SIF installation steps"):
        clusters.sif_instructions("summit", sif)


def test_clusters_command(user_file, capsys):
    assert main(["clusters", "list"]) == 0
    listed = capsys.readouterr().out
    assert "jean-zay-h100" in listed and "glicid-nautilus" in listed and "account, time" in listed
    assert main(["clusters", "show", "jean-zay-h100", "--set", "account=abc", "--script"]) == 0
    shown = capsys.readouterr().out
    assert "#SBATCH --account=abc@h100" in shown and "module load arch/h100" in shown
    assert main(["clusters", "show", "jean-zay-h10"]) == 1
    assert "did you mean 'jean-zay-h100'" in capsys.readouterr().err
