"""Executors place shards: here (a thread pool around a runtime) or on SLURM."""
