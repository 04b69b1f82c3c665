"""Exceptions of the evaluation harness. Each message is one line naming the file and the problem."""

from __future__ import annotations


class EvaluationError(Exception):
    """Bad input or state for an evaluation (the CLI prints it as one line and exits 2)."""


class ResultsError(EvaluationError):
    """A results file is missing, unreadable, of an unknown schema, or malformed."""
