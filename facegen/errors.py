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


#: errno -> (what happened, what to do) for faults of the machine rather than of facegen: one line each.
_ENVIRONMENT = {
    "EROFS": ("read-only file system", "choose a writable --out (or remount it read-write), then re-run"),
    "EACCES": ("permission denied", "make it writable for this user (chmod/chown) or choose another --out, then re-run"),
    "EPERM": ("operation not permitted", "make it writable for this user (chmod/chown) or choose another --out, then re-run"),
    "ENOSPC": ("no space left on the device", "free space, then re-run the same command: finished shards are kept and resumed"),
    "EDQUOT": ("disk quota exceeded", "free space or raise the quota, then re-run the same command: finished shards are kept"),
    "EFBIG": ("file too large (file system or `ulimit -f` limit)", "raise the limit or choose another --out, then re-run the same command to resume"),
    "ENOTDIR": ("a file is in the way where a folder must be", "choose a folder path for --out"),
    "EEXIST": ("exists and is not a folder", "choose a folder path for --out"),
    "EISDIR": ("is a folder where a file must be", "remove it or choose another --out"),
}


def environment_error(exc: BaseException, where: str | None = None) -> FacegenError | None:
    """A one-line :class:`FacegenError` for an OSError the machine caused (read-only or full disk,
    permissions, a file where a folder must be), naming the path; None for anything else."""
    import errno as errno_mod

    if not isinstance(exc, OSError):
        return None
    name = errno_mod.errorcode.get(exc.errno or 0, "")
    if name not in _ENVIRONMENT and isinstance(exc, PermissionError):
        name = "EACCES"
    if name not in _ENVIRONMENT:
        return None
    what, todo = _ENVIRONMENT[name]
    path = exc.filename if exc.filename else where
    error = FacegenError(f"{what}; {todo}", where=str(path) if path else None)
    error.__cause__ = exc
    return error


def is_environment_error(exc: BaseException) -> bool:
    return environment_error(exc) is not None
