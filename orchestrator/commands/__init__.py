"""Sub-commands of `gencsp`, one module each (see orchestrator/cli.py)."""
