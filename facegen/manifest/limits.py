"""Input bounds: how big a manifest, and the dataset it asks for, may be before anything is allocated.

| bound                                   | default     | raise it with                                          |
|-----------------------------------------|-------------|--------------------------------------------------------|
| manifest file size                      | 1 MiB       | FACEGEN_MAX_MANIFEST_BYTES                             |
| YAML values after alias expansion       | 1,000,000   | FACEGEN_MAX_MANIFEST_VALUES                            |
| images in one plan                      | 100,000,000 | manifest `limits: {max_images: N}` or FACEGEN_MAX_IMAGES |
| identities in one plan                  | 100,000     | manifest `limits: {max_identities: N}` or FACEGEN_MAX_IDENTITIES |
| planning memory (estimated up front)    | available RAM | FACEGEN_MAX_PLAN_MEMORY (bytes)                      |

The file-level bounds are checked before the YAML is parsed, so they can only come from the
environment; the dataset-size caps may also be raised by the manifest itself (its `limits:` section
does not change the samples, so it is not part of the run fingerprint).
"""

from __future__ import annotations

import os
from pathlib import Path

from facegen.errors import FacegenError

MAX_MANIFEST_BYTES = 1 << 20
MAX_MANIFEST_VALUES = 1_000_000
MAX_IMAGES = 100_000_000
MAX_IDENTITIES = 100_000

ENV_MANIFEST_BYTES = "FACEGEN_MAX_MANIFEST_BYTES"
ENV_MANIFEST_VALUES = "FACEGEN_MAX_MANIFEST_VALUES"
ENV_IMAGES = "FACEGEN_MAX_IMAGES"
ENV_IDENTITIES = "FACEGEN_MAX_IDENTITIES"
ENV_PLAN_MEMORY = "FACEGEN_MAX_PLAN_MEMORY"


def env_limit(name: str, default: int) -> int:
    """The positive integer in environment variable `name` (underscores allowed), else `default`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise FacegenError(f"must be a positive whole number of {'bytes' if 'BYTES' in name or 'MEMORY' in name else 'items'} (got {raw!r}); fix or unset it", where=name)
    return value


def max_manifest_bytes() -> int:
    return env_limit(ENV_MANIFEST_BYTES, MAX_MANIFEST_BYTES)


def max_manifest_values() -> int:
    return env_limit(ENV_MANIFEST_VALUES, MAX_MANIFEST_VALUES)


def max_images(manifest_value: int | None = None) -> tuple[int, str]:
    """The image cap and how to raise it (for the error message)."""
    if manifest_value is not None:
        return manifest_value, "limits.max_images"
    return env_limit(ENV_IMAGES, MAX_IMAGES), f"`limits: {{max_images: N}}` in the manifest or {ENV_IMAGES}=N"


def max_identities(manifest_value: int | None = None) -> tuple[int, str]:
    if manifest_value is not None:
        return manifest_value, "limits.max_identities"
    return env_limit(ENV_IDENTITIES, MAX_IDENTITIES), f"`limits: {{max_identities: N}}` in the manifest or {ENV_IDENTITIES}=N"


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} PiB"  # pragma: no cover


def available_memory() -> int | None:
    """Bytes this process may still use: MemAvailable, capped by a cgroup limit; None if unknown."""
    candidates: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                candidates.append(max(0, int(limit) - int(Path(usage_file).read_text().strip())))
            break
        except (OSError, ValueError):
            continue
    return min(candidates) if candidates else None


def plan_memory_budget() -> tuple[int | None, str]:
    """Bytes planning may use (FACEGEN_MAX_PLAN_MEMORY, else what is available) and where that came from."""
    if os.environ.get(ENV_PLAN_MEMORY, "").strip():
        return env_limit(ENV_PLAN_MEMORY, 1), ENV_PLAN_MEMORY
    return available_memory(), "available memory"
