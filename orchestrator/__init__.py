"""gencsp: a benchmark of generative models for crystal structure prediction."""

__version__ = "0.1.0"
