"""Errors that are the user's to fix: shown as one clear message, no traceback."""


class GencspError(Exception):
    """Base of every error gencsp reports to the user (exit code 1)."""
