"""``manifest.lock.yaml``: the resolved manifest, model hash and package versions of a dataset.

Its ``fingerprint`` (resolved manifest + model hash + dataset format) is what resume compares: shards
and locks with another fingerprint belong to a different run.
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
DATASET_FORMAT = 1
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

    def to_yaml(self) -> bytes:
        data = {
            "facegen_dataset": DATASET_FORMAT,
            "fingerprint": self.fingerprint,
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


def write_lock(root: Location, lock: Lock) -> None:
    root.makedirs()
    root.write_bytes_atomic(LOCK_NAME, lock.to_yaml())
