"""Cluster profiles: account, partition, QoS, modules and shell of a SLURM site.

Profiles ship in `orchestrator/clusters.yaml` (local, jean-zay-v100/a100/h100,
jean-zay-cpu, glicid-nautilus). A user file — `$GENCSP_CLUSTERS`, else
`$XDG_CONFIG_HOME/gencsp/clusters.yaml` (default `~/.config/gencsp/clusters.yaml`) —
updates them key by key or adds new ones (`extends: NAME`); a run may override keys
again (`gencsp resume RUN --set account=abc`). Unknown keys and names fail with a
"did you mean"; missing mandatory values (account, time) fail before anything is
submitted (`Profile.require`).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .errors import GencspError

SHIPPED = Path(__file__).with_name("clusters.yaml")
JEAN_ZAY_REMOTE = "$WORK/gencsp/images"  # where the SIF waits before `idrcontmgr cp`


class ProfileError(GencspError):
    """A cluster profile is unknown, misspelt or incomplete."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    # --- what is asked of SLURM
    cluster: str | None = None  # --clusters, on multi-cluster sites (GliCID: nautilus)
    account: str | None = None  # project; a bare name gets `account_suffix` (Jean Zay: abc -> abc@h100)
    account_suffix: str = ""
    account_required: bool = False
    partition: str | None = None
    gpu_partition: str | None = None  # partition of tasks that use a GPU, when it differs
    qos: str | None = None
    constraint: str | None = None
    time: str | None = None  # wall time per task (minutes, H:MM:SS, D-HH:MM:SS); default: from the model card
    time_required: bool = False  # the site refuses jobs without an explicit time (GliCID)
    max_time: str | None = None  # the QoS limit: a computed time is capped there
    startup_minutes: int = 10  # added to a computed time: modules, image check, container start
    gpus_per_task: int = 0  # GPUs of a task that uses one (0: this profile has none)
    gres: str = "gpu"  # --gres=<gres>:<n>
    gpu_only: bool = False  # GPU partitions: refuse work that uses no GPU (it would burn GPU hours)
    cpus_per_gpu: int | None = None  # cores that come with each GPU
    request_memory: bool = True  # False where memory follows the cores (Jean Zay: no --mem)
    memory_per_cpu_gb: float | None = None  # with request_memory false: cores are raised to cover the memory
    hint: str | None = None  # --hint (Jean Zay: nomultithread)
    sbatch: dict = field(default_factory=dict)  # any other #SBATCH option, e.g. {exclusive: true}
    # --- the job script
    shell: str = "/bin/bash"  # interpreter of the job script (the script itself is POSIX sh)
    module_purge: bool = False
    modules: tuple[str, ...] = ()  # `module load` each, in order
    setup: tuple[str, ...] = ()  # shell lines run before the task, e.g. activating the venv gencsp is in
    gencsp: str | None = None  # the gencsp command on the nodes (default: the one running now)
    runtime: str | None = None  # runtime of the tasks when the run says `auto`
    sif_dir: str | None = None  # where tasks find SIF images; exported as GENCSP_SIF_DIR
    verify_sif: bool = True  # check the SIF sha256 recorded in the run before each task
    # --- submission
    max_parallel: int = 64  # the array throttle (%)
    max_array_size: int = 1000  # tasks per array (the site's MaxArraySize - 1)
    poll_seconds: float = 30.0  # squeue/scontrol at most this often

    def account_flag(self) -> str | None:
        if not self.account:
            return None
        if self.account_suffix and "@" not in self.account:
            return self.account + self.account_suffix
        return self.account

    def time_minutes(self, computed_seconds: float | None = None) -> int:
        """Wall time per task: the profile's, else computed + startup, capped at max_time."""
        if self.time is not None:
            return parse_minutes(self.time, f"profile {self.name}: time")
        if self.time_required:
            raise ProfileError(f"profile {self.name}: `time` is mandatory on this cluster; set it in "
                               f"{user_file()} or with --set time=HH:MM:SS")
        minutes = self.startup_minutes + math.ceil((computed_seconds or 3600) / 60)
        if self.max_time is not None:
            minutes = min(minutes, parse_minutes(self.max_time, f"profile {self.name}: max_time"))
        return minutes

    def require(self) -> None:
        """Raise, naming what to set, when a value the site demands is missing."""
        if self.account_required and not self.account:
            example = f"abc{self.account_suffix}" if self.account_suffix else "your-project"
            raise ProfileError(
                f"profile {self.name}: `account` is mandatory on this cluster; add\n"
                f"  {self.name}:\n    account: {example.split('@')[0]}\n"
                f"to {user_file()} (or pass --set account=...)")
        if self.time_required and self.time is None:
            self.time_minutes()
        for key in ("time", "max_time"):
            if getattr(self, key) is not None:
                parse_minutes(getattr(self, key), f"profile {self.name}: {key}")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["modules"], data["setup"] = list(self.modules), list(self.setup)
        return data


FIELDS = {f.name: f for f in fields(Profile)}
TUPLE_KEYS = {"modules", "setup"}


def parse_minutes(value, where: str = "time") -> int:
    """SLURM time formats (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) to whole minutes, rounded up."""
    if isinstance(value, bool):
        raise ProfileError(f"{where}: expected a SLURM time such as 90 or 02:00:00, got {value!r}")
    if isinstance(value, int | float):
        return math.ceil(value)
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if not match:
        raise ProfileError(f"{where}: expected a SLURM time such as 90 or 02:00:00, got {value!r}")
    days, first, second, third = match.groups()
    parts = [int(first)] + [int(p) for p in (second, third) if p is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        parts += [0] * (3 - len(parts))
        seconds = int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    elif len(parts) == 1:  # minutes
        seconds = parts[0] * 60
    elif len(parts) == 2:  # M:S
        seconds = parts[0] * 60 + parts[1]
    else:  # H:M:S
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return math.ceil(seconds / 60)


def user_file() -> Path:
    if os.environ.get("GENCSP_CLUSTERS"):
        return Path(os.environ["GENCSP_CLUSTERS"]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config).expanduser() / "gencsp" / "clusters.yaml"


def _loader():
    """A YAML loader that keeps 02:00:00 a string (YAML 1.1 would read base-60 7200)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        key: [(tag, regex) for tag, regex in resolvers if tag not in ("tag:yaml.org,2002:int",
                                                                     "tag:yaml.org,2002:float")]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]*\.[0-9]+$"),
                                 list("-+.0123456789"))
    return Loader


def read_file(path: Path) -> dict[str, dict]:
    import yaml

    try:
        data = yaml.load(Path(path).read_text(), Loader=_loader()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ProfileError(f"{path}: expected a mapping of profile name -> settings")
    return data


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_values(name: str, values: dict, where: str) -> dict:
    """Keys must be Profile fields; lists become tuples; types are checked against the defaults."""
    clean = {}
    for key, value in values.items():
        if key == "extends":
            continue
        if key not in FIELDS or key == "name":
            raise ProfileError(f"{where}: profile {name!r}: unknown key {key!r}{suggest(key, FIELDS)}")
        if key in TUPLE_KEYS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ProfileError(f"{where}: profile {name!r}: {key} must be a list of strings")
            value = tuple(value)
        elif key == "sbatch" and not isinstance(value, dict):
            raise ProfileError(f"{where}: profile {name!r}: sbatch must be a mapping of option -> value")
        elif value is not None and key not in ("time", "max_time", "sbatch"):
            value = _coerce(str(FIELDS[key].type), value, f"{where}: profile {name!r}: {key}")
        clean[key] = value
    return clean


def _coerce(kind: str, value, where: str):
    """`value` as the field's annotated type ('bool', 'int | None', 'float', 'str | None'...)."""
    if "bool" in kind:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: expected true or false, got {value!r}")
        return value
    if "int" in kind or "float" in kind:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ProfileError(f"{where}: expected a number, got {value!r}") from None
        if "int" in kind:
            if number != int(number):
                raise ProfileError(f"{where}: expected a whole number, got {value!r}")
            return int(number)
        return number
    if isinstance(value, dict | list | bool):
        raise ProfileError(f"{where}: expected a single value, got {value!r}")
    return str(value)


def _merge(raw: dict[str, dict], where: dict[str, str]) -> dict[str, Profile]:
    """Resolve `extends` chains and build the profiles."""
    resolved: dict[str, dict] = {}

    def values_of(name: str, chain: tuple[str, ...]) -> dict:
        if name in resolved:
            return resolved[name]
        if name in chain:
            raise ProfileError(f"{where[name]}: profile {name!r}: `extends` loops through {' -> '.join(chain)}")
        entry = raw[name]
        base = {}
        if entry.get("extends"):
            parent = entry["extends"]
            if parent not in raw:
                raise ProfileError(f"{where[name]}: profile {name!r} extends unknown profile {parent!r}"
                                   f"{suggest(parent, raw)}")
            base = dict(values_of(parent, (*chain, name)))
            base.pop("description", None)
        resolved[name] = {**base, **check_values(name, entry, where[name])}
        return resolved[name]

    return {name: Profile(name=name, **values_of(name, ())) for name in raw}


def load(path: Path | None = None) -> dict[str, Profile]:
    """Shipped profiles updated by the user file (if it exists)."""
    raw = {name: dict(values) for name, values in read_file(SHIPPED).items()}
    where = dict.fromkeys(raw, str(SHIPPED))
    path = Path(path) if path else user_file()
    if path.is_file():
        for name, values in read_file(path).items():
            if name in raw and "extends" not in values:
                check_values(name, values, str(path))
                raw[name] = {**raw[name], **values}
            else:
                raw[name] = dict(values)
            where[name] = str(path)
    return _merge(raw, where)


def sources(path: Path | None = None) -> dict[str, str]:
    """Where each profile name is defined or updated: 'shipped', 'user' or 'shipped+user'."""
    shipped = set(read_file(SHIPPED))
    path = Path(path) if path else user_file()
    user = set(read_file(path)) if path.is_file() else set()
    return {name: "+".join(s for s, member in (("shipped", name in shipped), ("user", name in user)) if member)
            for name in sorted(shipped | user)}


def get(name: str, overrides: dict | None = None, path: Path | None = None) -> Profile:
    """The profile `name` (or the single profile of a YAML file `name`), with per-run overrides."""
    if name and name.endswith((".yaml", ".yml")) and Path(name).is_file():
        data = read_file(Path(name))
        if len(data) != 1:
            raise ProfileError(f"{name}: a profile file holds exactly one profile, found {len(data)}")
        profile = _merge({**read_file(SHIPPED), **data}, dict.fromkeys([*read_file(SHIPPED), *data], name))
        profile = profile[next(iter(data))]
    else:
        profiles = load(path)
        if name not in profiles:
            raise ProfileError(f"unknown cluster profile {name!r}{suggest(name or '', profiles)}; "
                               f"known: {', '.join(profiles)} (see `gencsp clusters list`)")
        profile = profiles[name]
    if overrides:
        profile = replace(profile, **check_values(profile.name, overrides, "--set"))
    return profile


def from_dict(data: dict) -> Profile:
    """A profile recorded in a run (run.json), read back."""
    values = check_values(data.get("name", "recorded"), {k: v for k, v in data.items() if k != "name"}, "run.json")
    return Profile(name=data.get("name", "recorded"), **values)


def parse_overrides(pairs: list[str] | None) -> dict:
    """`key=value` pairs (--set) to a dict; lists as comma-separated values."""
    values = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ProfileError(f"--set expects key=value, got {pair!r}")
        values[key.strip()] = [v for v in value.split(",") if v] if key.strip() in TUPLE_KEYS else value
    return values


# --- the same SIF everywhere -----------------------------------------------------------------


def jean_zay_sif_steps(sif: Path, sha256: str | None = None, host: str = "jean-zay",
                       remote_dir: str = JEAN_ZAY_REMOTE, profile: str = "jean-zay-h100") -> list[str]:
    """Shell lines that put `sif` where Jean Zay runs images (`idrcontmgr`), then check it is the same file."""
    name = Path(sif).name
    digest = sha256 or "<sha256 of the SIF>"
    return [
        "# 1. on a Jean Zay login node: a folder for images; note the full path it prints (DIR)",
        f"mkdir -p {remote_dir} && echo {remote_dir}",
        "# 2. on the machine that built the SIF",
        f"sha256sum {sif}   # must print {digest}",
        f"scp {sif} {host}:DIR/{name}",
        "# 3. on the Jean Zay login node: register it (images run only from $SINGULARITY_ALLOWED_DIR)",
        "module load singularity",
        f"idrcontmgr cp {remote_dir}/{name}",
        "idrcontmgr ls",
        f"echo '{digest}  '$SINGULARITY_ALLOWED_DIR/{name} | sha256sum -c -",
        "# 4. submit from the login node; tasks find the image through GENCSP_SIF_DIR",
        "export GENCSP_SIF_DIR=$SINGULARITY_ALLOWED_DIR",
        f"gencsp bench --model {Path(sif).stem} ... --runtime apptainer --executor slurm --profile {profile}",
    ]


def glicid_sif_steps(sif: Path, sha256: str | None = None, host: str = "glicid",
                     remote_dir: str = "/scratch/nautilus/users/$USER/gencsp/images") -> list[str]:
    """Shell lines that put `sif` on GliCID's scratch (no registration step there) and check it."""
    name = Path(sif).name
    digest = sha256 or "<sha256 of the SIF>"
    return [
        "# 1. on a GliCID login node: a folder for images; note the full path it prints (DIR)",
        f"mkdir -p {remote_dir} && echo {remote_dir}",
        "# 2. on the machine that built the SIF",
        f"sha256sum {sif}   # must print {digest}",
        f"scp {sif} {host}:DIR/{name}",
        "# 3. on the GliCID login node",
        f"echo '{digest}  '{remote_dir}/{name} | sha256sum -c -",
        f"export GENCSP_SIF_DIR={remote_dir}",
        f"gencsp bench --model {Path(sif).stem} ... --runtime apptainer --executor slurm --profile glicid-nautilus",
    ]


def sif_instructions(cluster: str, sif: Path, sha256: str | None = None) -> str:
    """The steps that install one SIF on `cluster` (jean-zay…, glicid…), as text to print."""
    sha256 = sha256 or _known_sha256(Path(sif))
    if cluster.startswith("jean-zay") or cluster in ("jz", "idris"):
        return "\n".join(jean_zay_sif_steps(Path(sif), sha256))
    if cluster.startswith("glicid") or cluster == "nautilus":
        return "\n".join(glicid_sif_steps(Path(sif), sha256))
    raise ProfileError(f"no SIF installation steps for {cluster!r}; known: jean-zay, glicid")


def _known_sha256(sif: Path) -> str | None:
    """The sha256 recorded when the SIF was built, else computed when the file is here."""
    try:
        from .images import records

        for entry in records().values():
            if entry.get("sif") == str(sif) and entry.get("sif_sha256"):
                return entry["sif_sha256"]
    except ImportError:
        pass
    if sif.is_file():
        from .hashing import sha256_file

        return sha256_file(sif)
    return None
