"""``manifest.lock.yaml``: the resolved manifest, model hash and package versions of a dataset.

Its ``fingerprint`` (resolved manifest + model hash + dataset format) is what resume compares: shards
and locks with another fingerprint belong to a different run. The one exception is a raised regenerate
budget (`changed_only`), which continues a run; its shards keep the fingerprint the run started with
(``shard_fingerprint``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import yaml

from facegen.io.fs import Location

LOCK_NAME = "manifest.lock.yaml"
#: 2: generated labels name the plan's values ``target_*`` and carry measured columns (facegen.labels).
DATASET_FORMAT = 2
VERSIONED_PACKAGES = (
    "facegen",
    "torch",
    "diffusers",
    "transformers",
    "ray",
    "webdataset",
    "pyarrow",
    "pandas",
    "numpy",
    "pillow",
    "fsspec",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def fingerprint(resolved_manifest: dict[str, Any], model_hash: str) -> str:
    """Run identity: what would change the samples (not package versions, paths of the lock, times)."""
    payload = {"format": DATASET_FORMAT, "manifest": resolved_manifest, "model_hash": model_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Lock:
    fingerprint: str
    manifest: dict[str, Any]
    manifest_source: str
    manifest_sha256: str
    model: dict[str, Any]  # dir, id, hash
    versions: dict[str, str]
    created: str
    #: What the shards' `_stats.json` markers carry (resume trusts those): the run's fingerprint, or, once a
    #: raised regenerate budget continued the run, the fingerprint the run started with.
    shard_fingerprint: str = ""

    def __post_init__(self) -> None:
        self.shard_fingerprint = self.shard_fingerprint or self.fingerprint

    def to_yaml(self) -> bytes:
        data = {
            "facegen_dataset": DATASET_FORMAT,
            "fingerprint": self.fingerprint,
            **({"shard_fingerprint": self.shard_fingerprint} if self.shard_fingerprint != self.fingerprint else {}),
            "created": self.created,
            "manifest_source": self.manifest_source,
            "manifest_sha256": self.manifest_sha256,
            "model": self.model,
            "versions": self.versions,
            "manifest": self.manifest,
        }
        return yaml.safe_dump(data, sort_keys=False).encode()

    @classmethod
    def create(cls, manifest: dict[str, Any], source: str, source_bytes: bytes, model: dict[str, Any]) -> "Lock":
        return cls(
            fingerprint=fingerprint(manifest, str(model.get("hash"))),
            manifest=manifest,
            manifest_source=source,
            manifest_sha256=hashlib.sha256(source_bytes).hexdigest(),
            model=model,
            versions=package_versions(),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )


def read_lock(root: Location) -> dict[str, Any] | None:
    """The lock file's data, or None when the dataset has none."""
    if not root.exists(LOCK_NAME):
        return None
    data = yaml.safe_load(root.read_bytes(LOCK_NAME))
    return data if isinstance(data, dict) else None


def abandoned_before_shards(root: Location, existing: dict[str, Any] | None, fingerprint: str, shards_dir: str = "shards") -> bool:
    """True when DIR's lock is another run's that stopped before writing any shard (its plan failed,
    it was killed while planning, ...): DIR then holds nothing worth protecting, so a corrected
    manifest may take it over instead of being refused as "a different manifest"."""
    return existing is not None and existing.get("fingerprint") != fingerprint and not root.list(shards_dir)


def changed_only(existing: dict[str, Any] | None, lock: Lock, section: str, keys: tuple[str, ...]) -> dict[str, tuple[Any, Any]] | None:
    """When `lock`'s run differs from the `existing` lock's only in the values `keys` of manifest section
    `section`, the changes ``{key: (old, new)}``; None when anything else differs (or nothing to compare)."""
    if existing is None or existing.get("facegen_dataset") != DATASET_FORMAT:
        return None
    old, new = existing.get("manifest"), lock.manifest
    if not isinstance(old, dict) or not isinstance(old.get(section), dict) or not isinstance(new.get(section), dict):
        return None
    before, after = old[section], new[section]
    if any(k not in before or k not in after for k in keys):
        return None
    patched = {**old, section: {**before, **{k: after[k] for k in keys}}}
    if fingerprint(patched, str((existing.get("model") or {}).get("hash"))) != lock.fingerprint:
        return None
    return {k: (before[k], after[k]) for k in keys if before[k] != after[k]}


def write_lock(root: Location, lock: Lock) -> None:
    root.makedirs()
    root.write_bytes_atomic(LOCK_NAME, lock.to_yaml())


# -- one writer per dataset -------------------------------------------------------------------------
#: The writer lock of a dataset folder: who writes it now (host, pid, start time). Taken before anything
#: is written and held until the run ends. Local folders: an ``flock`` on this file (the kernel drops it
#: when the holder dies, so a stale lock is recognised at once). Object stores (``s3://``, ...): a lease
#: object the holder renews every ``ttl / 3`` s; a lease not renewed for ``ttl`` s, or held by a dead
#: process on this host, is stale and taken over.
WRITER_LOCK_NAME = "writer.lock"
LEASE_TTL_ENV = "FACEGEN_LOCK_TTL"  # seconds a lease stays valid without renewal (object stores)
LEASE_SETTLE_ENV = "FACEGEN_LOCK_SETTLE"  # seconds to wait before reading a new lease back (object stores)


def _process_start(pid: int) -> str | None:
    """An identifier of process `pid`'s start (Linux: clock ticks since boot), None when unknown/absent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    current = _process_start(pid)
    return start is None or current is None or current == start  # a reused pid is another process


def describe_holder(info: dict[str, Any]) -> str:
    return f"host {info.get('host', '?')}, pid {info.get('pid', '?')}, started {info.get('started', '?')}"


class WriterLock:
    """``with WriterLock(root): ...`` -- the one writer of `root` (see :data:`WRITER_LOCK_NAME`).

    A second writer (another ``balance`` on the same DIR, or ``--overwrite`` while a run is going) gets a
    :class:`~facegen.errors.FacegenError` naming the holder. Re-entrant in one process (same object)."""

    def __init__(self, root: Location, *, ttl: float | None = None, settle: float | None = None) -> None:
        import os

        self.root = root
        self.ttl = float(ttl if ttl is not None else os.environ.get(LEASE_TTL_ENV, 60))
        self.settle = float(settle if settle is not None else os.environ.get(LEASE_SETTLE_ENV, 1.0))
        self.token = ""
        self.stale: dict[str, Any] | None = None  # the dead holder we took over from, if any
        self._fd: int | None = None
        self._stop = None
        self._thread = None

    # -- holder info ----------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        import os
        import socket
        import uuid

        if not self.token:
            self.token = uuid.uuid4().hex
            self._started = time.time()
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._started)),
            "token": self.token,
            "renewed": time.time(),
            "ttl": self.ttl,
        }

    def _refuse(self, info: dict[str, Any]) -> None:
        from facegen.errors import FacegenError

        raise FacegenError(
            f"is being written by another facegen run ({describe_holder(info)}); wait for it to finish or stop it "
            "(its finished shards are kept), then re-run, or choose another --out",
            where=self.root.url,
        )

    # -- acquire / release ----------------------------------------------------------------------------
    def acquire(self) -> "WriterLock":
        if self.token and (self._fd is not None or self._thread is not None):
            return self
        self.root.makedirs()
        if self.root.is_local:
            self._acquire_local()
        else:
            self._acquire_lease()
        if self.stale:
            import logging

            logging.getLogger(__name__).warning(
                "%s: took over the writer lock of a run that died (%s)", self.root.url, describe_holder(self.stale)
            )
        return self

    def _acquire_local(self) -> None:
        import fcntl
        import os

        path = self.root.path(WRITER_LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_fd(fd) or {}
            os.close(fd)
            self._refuse(info)
        previous = _read_fd(fd)
        if previous and not previous.get("released"):
            self.stale = previous  # its holder died without releasing: the kernel dropped its flock
        data = json.dumps(self._info(), indent=1).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self._fd = fd

    def _acquire_lease(self) -> None:
        import threading

        current = read_writer(self.root)
        if current and lease_alive(current):
            self._refuse(current)
        if current and not current.get("released"):
            self.stale = current
        self.root.write_bytes_atomic(WRITER_LOCK_NAME, json.dumps(self._info(), indent=1).encode())
        time.sleep(self.settle)  # a writer that raced us has written its lease by now: the last one wins
        back = read_writer(self.root)
        if not back or back.get("token") != self.token:
            self._refuse(back or {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="facegen-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        import logging

        while not self._stop.wait(self.ttl / 3):  # type: ignore[union-attr]
            try:
                current = read_writer(self.root)
                if current and current.get("token") != self.token:
                    logging.getLogger(__name__).error("%s: the writer lease was taken by %s", self.root.url, describe_holder(current))
                    return
                self.root.write_bytes_atomic(WRITER_LOCK_NAME, json.dumps(self._info(), indent=1).encode())
            except Exception as exc:  # noqa: BLE001 - keep renewing; a lapse is reported by the next writer
                logging.getLogger(__name__).warning("%s: renewing the writer lease failed: %s", self.root.url, exc)

    def release(self) -> None:
        import os

        info = {**self._info(), "released": True} if self.token else None
        if self._fd is not None:
            try:
                data = json.dumps(info, indent=1).encode()
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, data, 0)
            except OSError:
                pass
            os.close(self._fd)  # drops the flock
            self._fd = None
        if self._thread is not None:
            self._stop.set()  # type: ignore[union-attr]
            self._thread.join(timeout=5)
            self._thread = None
            try:
                current = read_writer(self.root)
                if current and current.get("token") == self.token:
                    self.root.write_bytes_atomic(WRITER_LOCK_NAME, json.dumps(info, indent=1).encode())
            except Exception:  # noqa: BLE001 - an unreleased lease simply expires
                pass

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_fd(fd: int) -> dict[str, Any] | None:
    import os

    try:
        raw = os.pread(fd, 1 << 16, 0)
        data = json.loads(raw) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_writer(root: Location) -> dict[str, Any] | None:
    """The writer lock's content (last holder), or None."""
    try:
        data = json.loads(root.read_bytes(WRITER_LOCK_NAME))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def lease_alive(info: dict[str, Any], now: float | None = None) -> bool:
    """Whether a lease (object stores) still protects its holder: not released, renewed within its ttl,
    and -- when the holder ran on this host -- its process still running."""
    import socket

    if info.get("released"):
        return False
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        if not _pid_alive(info["pid"], info.get("process_start")):
            return False
    now = time.time() if now is None else now
    return now - float(info.get("renewed", 0)) < float(info.get("ttl", 60))


def check_no_writer(root: Location) -> None:
    """Refuse at once (FacegenError naming the holder) when a live writer holds `root`; writes nothing.
    A cheap early check; :class:`WriterLock` is what actually guards."""
    if root.is_local:
        import fcntl
        import os

        try:
            fd = os.open(root.path(WRITER_LOCK_NAME), os.O_RDONLY)
        except OSError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                WriterLock(root)._refuse(_read_fd(fd) or {})
        finally:
            os.close(fd)
        return
    current = read_writer(root)
    if current and lease_alive(current):
        WriterLock(root)._refuse(current)
