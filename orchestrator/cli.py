"""`gencsp` command line. Sub-commands live in orchestrator/commands/, imported lazily
so that `gencsp --help` stays instant."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading

from . import __version__

# Each module defines register(subparsers); its parsers set `func` to a callable(args) -> int.
COMMAND_MODULES = (
    "data",
    "models",
    "validate",
    "schemas",
    "bench",
    "run_shard",
    "train",
    "realise",
    "images",
    "check_image",
    "new_model",
    "status",
    "resume",
    "clusters",
    "evaluate",
    "leaderboard",
    "report",
    "relax",
    "dft",
    "e2e",
)


class CliError(Exception):
    """A user error: printed without a traceback, exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gencsp",
        description="Benchmark generative models for crystal structure prediction.",
    )
    parser.add_argument("--version", action="version", version=f"gencsp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"orchestrator.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from .errors import GencspError

    with terminate_as_interrupt():
        try:
            return int(args.func(args) or 0)
        except GencspError as exc:
            from .console import err

            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            return 1
        except KeyboardInterrupt:
            stop_containers()
            return 130


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (kill, scancel, a CI timeout) ends a command as Ctrl-C does: `finally` blocks run and
    containers are removed; the run's state stays on disk for a resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_containers() -> None:
    docker = sys.modules.get("orchestrator.runtimes.docker")  # loaded only if this command ran containers
    if docker is not None and docker.stop_live():
        from .console import err

        err.print("stopped the containers this command had started; the run resumes where it stopped")


if __name__ == "__main__":
    sys.exit(main())
