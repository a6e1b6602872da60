"""The engine's user-input error: one line naming the file or flag, what was expected and what was found."""

from __future__ import annotations

__all__ = ["DataError", "one_line"]


class DataError(ValueError):
    """A user's file or folder is missing, unreadable or inconsistent.

    The message is one line: ``<file path or --flag>: expected <what>, found <what>``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message, limit=2000))


def one_line(text: str, limit: int = 400) -> str:
    """Collapse ``text`` to a single line of at most ``limit`` characters (for error messages)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."

