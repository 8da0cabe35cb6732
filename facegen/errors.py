"""The one exception type for problems a user can cause (bad manifest, missing file, ...).

The CLI turns a :class:`FacegenError` into a single line on stderr and exit code 2; library
callers (notebooks) get a normal exception whose message already says what to do.
"""

from __future__ import annotations


class FacegenError(Exception):
    """A user-facing error: the message names the field/file and what to do about it."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
