"""Errors that end a command with one clear line instead of a traceback."""

from __future__ import annotations


class CaitoolError(Exception):
    """A user-facing error: the CLI prints ``caitool <command>: <message>`` and exits 1."""

    exit_code = 1


class InputError(CaitoolError):
    """Bad input at a known place: ``<file>:<line>: <what is wrong>``."""

    def __init__(self, source: str, line: int, problem: str):
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(f"{source}:{line}: {problem}")
