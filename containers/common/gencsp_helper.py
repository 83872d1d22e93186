"""gencsp container helper: the model side of the sampling contract.

Copied unchanged into every model image (standard library only, Python >= 3.8),
so that adapters never import the orchestrator. An adapter does:

    import gencsp_helper as g

    def sample(session):
        for target, index in session.requested():
            with session.slot(target, index) as slot:
                slot.cif(make_structure(target, session.seed_for(target, index)))

    if __name__ == "__main__":
        g.main(sample, model={"name": "my_model"})

A slot measures its sample's wall and CPU seconds. A search that returns its
k best structures of one target measures itself with `session.meter(target)`
(energy evaluations, relaxation seconds, the request's budget) and answers with
`session.save_search(target, found, meter)`.

and the image runs `sample /io/request.json /io/out`. Every requested sample
ends in the manifest: produced ones as `ok`, the rest as `failed` with a reason,
even when the adapter crashes half-way. Files are written atomically.
"""

import contextlib
import datetime
import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
import traceback

CONTRACT_VERSION = "1.1"
MANIFEST = "manifest.json"
STRUCTURES_DIR = "structures"
# Stop after this many failures in a row with nothing produced: a systemic bug,
# not bad luck, and hiding it behind per-sample failures wastes a GPU allocation.
MAX_CONSECUTIVE_FAILURES = 50
FLUSH_EVERY_SECONDS = 30.0


class ContractError(Exception):
    """The request does not follow the contract."""


def _umask():
    mask = os.umask(0o022)  # read at import, before any thread exists
    os.umask(mask)
    return mask


UMASK = _umask()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def atomic_write(path, data):
    """Write text or bytes to `path` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # not mkstemp's 0600: results are read by a project's group
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cpu_clock():
    """User + system CPU seconds of this process, its threads and its waited-for children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _read(path):
    try:
        with open(path, "r") as handle:
            return handle.read()
    except OSError:
        return ""


def usable_cpus():
    """CPUs this process may use: its affinity, lowered by a cgroup CPU quota (docker --cpus)."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    quota = _read("/sys/fs/cgroup/cpu.max").split()  # cgroup v2: "max 100000" or "150000 100000"
    if len(quota) == 2 and quota[0] != "max":
        cpus = min(cpus, float(quota[0]) / float(quota[1]))
    else:  # cgroup v1
        q, period = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").strip(), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").strip()
        if q and period and int(q) > 0:
            cpus = min(cpus, float(q) / float(period))
    return round(cpus, 2)


def hardware():
    """CPU model, CPU counts and memory, as seen from here (a container sees the host's CPUs)."""
    info = {"logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus()}
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            info["cpu_model"] = line.split(":", 1)[1].strip()
            break
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            info["memory_gb"] = round(int(line.split()[1]) / 1024.0 ** 2, 2)
            break
    return {k: v for k, v in info.items() if v is not None}


class Meter(object):
    """The cost of one target's search and its budget: wall and CPU clocks, energy evaluations.

    `count(n)` after each energy/force evaluation; `with meter.timing("relax"):` around local
    relaxations; `exhausted()` before starting more work; `progress()` when a structure is found.
    """

    def __init__(self, budget=None, gpu=False):
        self.budget = dict(budget or {})
        self.gpu = bool(gpu)
        self.found = []  # Session.search: [(cif text, progress when found)], best first
        self.evaluations = 0
        self.relax_seconds = 0.0
        self.sampling_seconds = 0.0
        self._wall = time.monotonic()
        self._cpu = cpu_clock()

    def count(self, n=1):
        self.evaluations += int(n)

    def seconds(self):
        return time.monotonic() - self._wall

    def cpu_seconds(self):
        return cpu_clock() - self._cpu

    def compute_seconds(self):
        """What a seconds budget counts: GPU seconds on a GPU, CPU seconds otherwise."""
        return self.seconds() if self.gpu else self.cpu_seconds()

    def remaining_evaluations(self):
        limit = self.budget.get("evaluations")
        return None if limit is None else max(0, int(limit) - self.evaluations)

    def exhausted(self):
        limit = self.budget.get("seconds")
        if limit is not None and self.compute_seconds() >= float(limit):
            return True
        return self.remaining_evaluations() == 0

    @contextlib.contextmanager
    def timing(self, what):
        """Add the block's wall seconds to relax_seconds ("relax") or sampling_seconds ("sampling")."""
        start = time.monotonic()
        try:
            yield
        finally:
            name = what + "_seconds"
            setattr(self, name, getattr(self, name) + time.monotonic() - start)

    def progress(self):
        out = {"seconds": round(self.seconds(), 4), "cpu_seconds": round(self.cpu_seconds(), 4),
               "energy_evaluations": self.evaluations}
        if self.gpu:
            out["gpu_seconds"] = out["seconds"]
        return out

    def cost(self, share=1):
        """This search's cost divided among `share` samples."""
        share = float(max(1, share))
        cost = {"cpu_seconds": self.cpu_seconds() / share, "energy_evaluations": int(round(self.evaluations / share)),
                "relax_seconds": self.relax_seconds / share}
        if self.sampling_seconds:
            cost["sampling_seconds"] = self.sampling_seconds / share
        if self.gpu:
            cost["gpu_seconds"] = self.seconds() / share
        return cost


def clean_cost(cost):
    """A cost dict as the manifest holds it: known fields, no None, numbers rounded."""
    out = {}
    for key, value in (cost or {}).items():
        if value is None:
            continue
        if key == "found_after":
            value = clean_cost(value)
            if value:
                out[key] = value
        elif key == "energy_evaluations":
            out[key] = int(value)
        else:
            out[key] = round(float(value), 4)
    return out


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        block = handle.read(chunk)
        while block:
            digest.update(block)
            block = handle.read(chunk)
    return digest.hexdigest()


def derived_seed(seed, target_id, index):
    """A seed per sample that does not depend on how targets were sharded."""
    text = "{}|{}|{}".format(seed, target_id, index).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big")


def load_json(path, what):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ContractError("{}: cannot read {}: {}".format(path, what, exc))


def check_version(path, request):
    version = str(request.get("contract_version", ""))
    if version.split(".")[0] != CONTRACT_VERSION.split(".")[0]:
        raise ContractError("{}: contract version {!r}, this helper speaks {}".format(path, version, CONTRACT_VERSION))


def read_request(path):
    """Load and minimally check a request (the orchestrator validated it fully)."""
    request = load_json(path, "request")
    check_version(path, request)
    for key in ("task", "targets"):
        if key not in request:
            raise ContractError("{}: missing key {!r}".format(path, key))
    return request


class Slot(object):
    """One requested sample being produced; see Session.slot."""

    def __init__(self, session, target_id, index):
        self.session = session
        self.target_id = target_id
        self.index = index
        self.done = False
        self.cost = {}  # the adapter may add energy_evaluations, relax_seconds, sampling_seconds
        self.start = time.monotonic()
        self.start_cpu = cpu_clock()

    def cif(self, text):
        self.session.save_cif(self.target_id, self.index, text, seconds=self.elapsed(), cost=self.measured())
        self.done = True

    def wyckoff(self, space_group, sites):
        self.session.save_wyckoff(self.target_id, self.index, space_group, sites, seconds=self.elapsed(),
                                  cost=self.measured())
        self.done = True

    def elapsed(self):
        return time.monotonic() - self.start

    def measured(self):
        """CPU seconds (and GPU seconds on a GPU) of the slot, with what the adapter added."""
        cost = {"cpu_seconds": cpu_clock() - self.start_cpu}
        if self.session.device == "cuda":
            cost["gpu_seconds"] = self.elapsed()
        cost.update(self.cost)
        return cost


class Session(object):
    """State of one `sample` call: the request, the records, the manifest."""

    def __init__(self, request_path, out_dir, model):
        self.request = read_request(request_path)
        self.out_dir = os.path.abspath(out_dir)
        self.model = dict(model)
        self.records = {}
        self.start = now_iso()
        self.load_start = load_average()
        self.consecutive_failures = 0
        self.last_flush = time.monotonic()
        options = dict(self.model.pop("default_options", {}) or {})
        options.update(self.request.get("options") or {})
        self.options = options
        if not os.path.isdir(self.out_dir):
            os.makedirs(self.out_dir)
        checkpoint = self.request.get("checkpoint")
        checkpoint = self.path(checkpoint) if checkpoint else None
        if checkpoint and os.path.isfile(checkpoint) and not self.model.get("checkpoint_sha256"):
            self.model["checkpoint_sha256"] = sha256_file(checkpoint)

    # --- what was asked -------------------------------------------------
    @property
    def task(self):
        return self.request["task"]

    @property
    def seed(self):
        return int(self.request.get("seed", 0))

    @property
    def device(self):
        return self.request.get("device", "cpu")

    @property
    def batch_size(self):
        return int(self.request.get("batch_size", 64))

    @property
    def targets(self):
        return self.request["targets"]

    def target(self, target_id):
        for target in self.targets:
            if target["id"] == target_id:
                return target
        raise KeyError(target_id)

    def requested(self):
        """(target dict, sample index) for every sample the manifest must answer."""
        return [(t, i) for t in self.targets for i in range(int(t.get("samples", 1)))]

    def pending(self):
        return [(t, i) for t, i in self.requested() if (t["id"], i) not in self.records]

    def path(self, container_path):
        """A path of the request as seen by this process.

        In an image the request's paths (/data, /ckpt) are real mounts; when the
        adapter runs on the host (local runtime), GENCSP_PATH_MAP, a JSON object
        {container prefix: host folder}, translates them.
        """
        mapping = json.loads(os.environ.get("GENCSP_PATH_MAP") or "{}")
        for prefix in sorted(mapping, key=len, reverse=True):
            if container_path == prefix or container_path.startswith(prefix.rstrip("/") + "/"):
                return mapping[prefix] + container_path[len(prefix.rstrip("/")):]
        return container_path

    def data_path(self, split):
        """Host-visible path of a dataset split the orchestrator mounted."""
        data = self.request.get("data") or {}
        if split not in data:
            raise ContractError("split {!r} was not mounted; mounted: {}".format(split, sorted(data)))
        return self.path(data[split])

    @property
    def budget(self):
        """Per-target compute budget of the request: {"evaluations": N, "seconds": S}, either may be absent."""
        budget = self.request.get("budget") or {}
        return {k: v for k, v in budget.items() if v is not None}

    def meter(self):
        """A Meter for one target's search, with the request's budget."""
        return Meter(self.budget, gpu=self.device == "cuda")

    def seed_for(self, target, index):
        target_id = target["id"] if isinstance(target, dict) else target
        return derived_seed(self.seed, target_id, index)

    # --- answers ----------------------------------------------------------
    def _check_requested(self, target_id, index):
        self.target(target_id)
        if not 0 <= index < int(self.target(target_id).get("samples", 1)):
            raise ContractError("sample {} of target {} was not requested".format(index, target_id))

    def _record(self, record):
        key = (record["target_id"], record["sample_index"])
        self.records[key] = record
        if record["status"] == "ok":
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
        if time.monotonic() - self.last_flush > FLUSH_EVERY_SECONDS:
            self.write_manifest(complete=False)

    @staticmethod
    def _with_cost(record, cost):
        cost = clean_cost(cost)
        if cost:
            record["cost"] = cost
        return record

    def save_cif(self, target_id, index, text, seconds=0.0, cost=None):
        self._check_requested(target_id, index)
        relative = "{}/{}.{}.cif".format(STRUCTURES_DIR, target_id, index)
        atomic_write(os.path.join(self.out_dir, relative), text)
        self._record(self._with_cost({"target_id": target_id, "sample_index": index, "status": "ok",
                                      "cif": relative, "seconds": float(seconds)}, cost))
        return relative

    def save_wyckoff(self, target_id, index, space_group, sites, seconds=0.0, cost=None):
        """sites: list of {"element", "letter"[, "multiplicity"]}."""
        self._check_requested(target_id, index)
        description = {"space_group": int(space_group), "sites": [dict(s) for s in sites]}
        self._record(self._with_cost({"target_id": target_id, "sample_index": index, "status": "ok",
                                      "wyckoff": description, "seconds": float(seconds)}, cost))

    def save_search(self, target, found, meter):
        """Answer every sample of `target` from one search: sample i is its i-th structure.

        found: [(cif text, meter.progress() when it was found), ...], best first. The search's
        cost is shared equally by the target's samples; samples beyond what it found fail.
        """
        target_id = target["id"] if isinstance(target, dict) else target
        samples = int(self.target(target_id).get("samples", 1))
        cost, seconds = meter.cost(share=samples), meter.seconds() / samples
        for index in range(samples):
            if index < len(found):
                text, progress = found[index]
                self.save_cif(target_id, index, text, seconds=seconds, cost=dict(cost, found_after=progress))
            else:
                self.fail(target_id, index, "the search found {} distinct structure(s), {} were requested".format(
                    len(found), samples), seconds=seconds, cost=cost)

    @contextlib.contextmanager
    def search(self, target):
        """One search answers every sample of `target`: yields a Meter whose `found` the adapter fills
        (best first). On leaving, the samples are saved (save_search); an exception fails them all."""
        meter = self.meter()
        try:
            yield meter
        except Exception as exc:  # noqa: BLE001 - recorded, and bounded by MAX_CONSECUTIVE_FAILURES
            samples = int(target.get("samples", 1))
            for index in range(samples):
                self.fail(target["id"], index, "{}: {}".format(type(exc).__name__, exc),
                          seconds=meter.seconds() / samples, cost=meter.cost(share=samples))
            return
        self.save_search(target, meter.found, meter)

    def fail(self, target_id, index, message, seconds=0.0, cost=None, rejected=False):
        """A failed sample. rejected: the model ran and its own filters turned the sample down (a
        result, however many in a row, so not counted towards the stop on systemic failures)."""
        self._check_requested(target_id, index)
        streak = self.consecutive_failures
        self._record(self._with_cost({"target_id": target_id, "sample_index": index, "status": "failed",
                                      "message": str(message)[:10000] or "failed", "seconds": float(seconds)}, cost))
        if rejected:
            self.consecutive_failures = streak
        elif self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES and not self.ok_count():
            raise RuntimeError("stopping: {} failures in a row and no sample produced; last: {}".format(
                self.consecutive_failures, message))

    def ok_count(self):
        return sum(1 for r in self.records.values() if r["status"] == "ok")

    @contextlib.contextmanager
    def slot(self, target, index):
        """Time one sample; an exception inside becomes a failed record, not a crash."""
        target_id = target["id"] if isinstance(target, dict) else target
        slot = Slot(self, target_id, index)
        try:
            yield slot
        except Exception as exc:  # noqa: BLE001 - recorded, and bounded by MAX_CONSECUTIVE_FAILURES
            self.fail(target_id, index, "{}: {}".format(type(exc).__name__, exc), seconds=slot.elapsed(),
                      cost=slot.measured())
            return
        if not slot.done:
            self.fail(target_id, index, "the adapter produced nothing for this sample", seconds=slot.elapsed(),
                      cost=slot.measured())

    # --- manifest ------------------------------------------------------------
    def manifest(self, complete):
        records = []
        for target, index in self.requested():
            record = self.records.get((target["id"], index))
            if record is None:
                if not complete:
                    continue
                record = {"target_id": target["id"], "sample_index": index, "status": "failed",
                          "message": "not produced by the model", "seconds": 0.0}
            records.append(record)
        runtime = {"device": self.device, "hostname": socket.gethostname(),
                   "python": platform.python_version(), "start": self.start,
                   "end": now_iso() if complete else None, "hardware": hardware(),
                   "cpu_seconds": round(cpu_clock(), 3), "load_start": self.load_start,
                   "load_end": load_average() if complete else None}
        runtime = {k: v for k, v in runtime.items() if v is not None or k == "end"}
        gpu = os.environ.get("GENCSP_GPU_NAME")
        if gpu:
            runtime["gpu_name"] = gpu
        return {"contract_version": CONTRACT_VERSION, "task": self.task, "seed": self.seed,
                "complete": bool(complete), "model": self.model, "runtime": runtime, "samples": records}

    def write_manifest(self, complete=True):
        text = json.dumps(self.manifest(complete), indent=2, sort_keys=True)
        atomic_write(os.path.join(self.out_dir, MANIFEST), text + "\n")
        self.last_flush = time.monotonic()


def fail_pending(session, message):
    for target, index in session.pending():
        session.records[(target["id"], index)] = {
            "target_id": target["id"], "sample_index": index, "status": "failed",
            "message": message[:10000], "seconds": 0.0}


def run_session(sample_fn, request_path, out_dir, model):
    """Run an adapter's sample function; return the process exit code.

    0: the adapter finished (failed samples are in the manifest). 1: the adapter
    crashed; the manifest still answers every sample. 2: the request is invalid.
    """
    try:
        session = Session(request_path, out_dir, model)
    except ContractError as exc:
        sys.stderr.write("gencsp_helper: {}\n".format(exc))
        return 2
    try:
        sample_fn(session)
    except BaseException as exc:  # noqa: BLE001 - the manifest must be written whatever happened
        traceback.print_exc()
        fail_pending(session, "adapter crashed: {}: {}".format(type(exc).__name__, exc))
        session.write_manifest(complete=True)
        return 1 if not isinstance(exc, KeyboardInterrupt) else 130
    session.write_manifest(complete=True)
    return 0


USAGE = "usage: {0} sample REQUEST.json OUT_DIR | {0} train REQUEST.json OUT_DIR"


def main(sample_fn, model, train_fn=None, argv=None):
    """Entry point of an image: `sample REQUEST OUT` or `train REQUEST OUT`."""
    entry_point = argv is None  # a process of its own: it may leave without tearing down
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] not in ("sample", "train"):
        sys.stderr.write(USAGE.format(os.path.basename(sys.argv[0])) + "\n")
        sys.exit(2)
    verb, request_path, out_dir = argv
    if verb == "train":
        if train_fn is None:
            sys.stderr.write("this model has no train entry\n")
            sys.exit(2)
        try:
            request = read_request_train(request_path)
        except ContractError as exc:
            sys.stderr.write("gencsp_helper: {}\n".format(exc))
            sys.exit(2)
        sys.exit(train_fn(request, out_dir) or 0)
    code = run_session(sample_fn, request_path, out_dir, model)
    if entry_point:
        exit_now(code)
    sys.exit(code)


def exit_now(code):
    """Leave once the manifest is on disk, skipping the interpreter's teardown.

    Tearing down pymatgen, scipy or torch takes 0.2 s or more per shard, for
    nothing: every result is already written. Streams and log handlers are
    flushed first; atexit hooks do not run.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)


def read_request_train(path):
    request = load_json(path, "train request")
    check_version(path, request)
    init_only = (request.get("options") or {}).get("init_only")  # untrained weights: no data read
    if not init_only and ("splits" not in request or "train" not in request["splits"]):
        raise ContractError("{}: a train request names splits including 'train'".format(path))
    return request
