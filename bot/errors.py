"""Errors the `wardline` command reports in one line with a hint, never as a traceback."""

from __future__ import annotations


class CommandError(Exception):
    """A runtime failure the user can act on: its message, then `hint` saying what to do (exit status 1)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
