"""Harness for fault-injection tests: run the real `facegen` CLI in a child process under a watchdog.

`run_cli` measures the child's own peak RSS (VmHWM of the exec'd program, sampled; not RUSAGE_CHILDREN) and wall
time, and kills it as soon as its RSS or run time exceeds the budget, so a regression (an alias bomb
that expands, a 14 TiB allocation) fails the test in seconds instead of exhausting the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

_SCRIPT = Path(sys.executable).with_name("facegen")
FACEGEN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "facegen.cli.main"]

BASE_MANIFEST = """\
version: 1
seed: 0
model: tiny
sampler: {scheduler: dpmpp, steps: 1, batch_size: 2}
output: {samples_per_shard: 2, image_format: jpg}
identities:
  random: {count: 2, max_similarity: 0.3}
images_per_identity: 1
targets:
  emotion: uniform
  pose:
    yaw: {uniform: [-30, 30], bins: 2}
  expression: neutral
  controls: id+lmk+emo
"""


@dataclass
class CliRun:
    code: int
    out: str
    err: str
    seconds: float
    max_rss_mib: float
    killed: str | None  # why the watchdog killed it (None: it ended by itself)

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()

    def assert_one_line_error(self, *needles: str, seconds: float = 5.0, rss_mib: float = 500.0) -> str:
        """Exit 2 with exactly one `error:` line on stderr (containing `needles`), within budget."""
        assert self.killed is None, f"watchdog: {self.killed}; stderr tail: {self.err[-2000:]}"
        assert self.code == 2, f"exit {self.code}; stdout {self.out[-500:]!r}; stderr {self.err[-2000:]!r}"
        assert len(self.err_lines) == 1, self.err[-3000:]
        line = self.err_lines[0]
        assert line.startswith("error: ") and "Traceback" not in self.err, line
        assert ";" in line, f"the message does not say what to do: {line}"
        for needle in needles:
            assert needle in line, f"{needle!r} not in {line!r}"
        assert self.seconds < seconds, f"took {self.seconds:.1f} s (budget {seconds} s)"
        assert self.max_rss_mib < rss_mib, f"peak RSS {self.max_rss_mib:.0f} MiB (budget {rss_mib} MiB)"
        return line


def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_cli(args: list[str], workdir: Path, *, env: dict[str, str] | None = None, timeout: float = 60.0, rss_limit_mib: float = 1500.0) -> CliRun:
    """Run `facegen ARGS` in `workdir`; the watchdog kills it past `timeout` s or `rss_limit_mib` MiB."""
    full_env = {**os.environ, **(env or {})}
    out_path, err_path = workdir / ".cli.stdout", workdir / ".cli.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.monotonic()
        proc = subprocess.Popen([*FACEGEN, *args], stdout=out, stderr=err, cwd=workdir, env=full_env)
        killed: list[str] = []
        done = threading.Event()

        # Peak RSS of the child's own program: VmHWM belongs to the address space exec() created, whereas
        # wait4's ru_maxrss also counts the fork of this (large) pytest process before the exec.
        peak = [0.0]

        def watchdog() -> None:
            while not done.wait(0.01):
                rss = _rss_mib(proc.pid)
                peak[0] = max(peak[0], _rss_mib(proc.pid, "VmHWM"))
                elapsed = time.monotonic() - start
                reason = (f"RSS {rss:.0f} MiB > {rss_limit_mib:.0f} MiB" if rss > rss_limit_mib
                          else f"still running after {timeout:.0f} s" if elapsed > timeout else None)
                if reason:
                    killed.append(reason)
                    proc.kill()
                    return

        thread = threading.Thread(target=watchdog, daemon=True)
        thread.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            done.set()
            thread.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
    return CliRun(
        code=proc.returncode,
        out=out_path.read_text(errors="replace"),
        err=err_path.read_text(errors="replace"),
        seconds=seconds,
        max_rss_mib=peak[0] or usage.ru_maxrss / 1024,  # ru_maxrss in KiB on Linux
        killed=killed[0] if killed else None,
    )


@pytest.fixture
def base_manifest() -> str:
    """A valid, tiny manifest (2 random identities x 1 image, 1 step) to break in one place."""
    return BASE_MANIFEST


@pytest.fixture
def cli(tmp_path: Path):
    """`cli(*args, env=..., timeout=..., rss_limit_mib=...)` -> CliRun, run inside tmp_path."""

    def run(*args: str, **kwargs) -> CliRun:
        return run_cli(list(args), tmp_path, **kwargs)

    return run


# -- datasets for the output-side faults (issue 12 items 1, 2, 5, 6, 7) ------------------------------------
#: BASE_MANIFEST as 2 shards of 1 image at 32 px: the smallest dataset where "exactly that shard" means something.
TWO_SHARDS = BASE_MANIFEST.replace("samples_per_shard: 2,", "samples_per_shard: 1,").replace(
    "batch_size: 2}", "batch_size: 2, image_size: 32}"
)


def write_two_shard_manifest(folder: Path, name: str = "m.yaml", **replace: str) -> Path:
    text = TWO_SHARDS
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / name
    path.write_text(text)
    return path


def balance_in_process(manifest: Path, out: Path, **options):
    """The library call behind `facegen balance --in-process` (no child process: no import overhead)."""
    from facegen.runner.balance import BalanceConfig, run_balance

    return run_balance(BalanceConfig(manifest=manifest, out=str(out), distributor="in-process", progress=False, **options))


def shard_bytes(out: Path) -> dict[str, bytes]:
    """Every tar / parquet / stats file under out/shards, by name (stats without their timing fields)."""
    import json

    files = {}
    for path in sorted((out / "shards").iterdir()):
        data = path.read_bytes()
        if path.name.endswith("_stats.json"):
            stats = json.loads(data)
            for volatile in ("seconds", "finished_at", "pid", "host"):
                stats.pop(volatile, None)
            data = json.dumps(stats, sort_keys=True).encode()
        files[path.name] = data
    return files


@pytest.fixture(scope="session")
def reference_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TWO_SHARDS generated once, uninterrupted (in-process): what every damaged / stopped run must end as."""
    folder = tmp_path_factory.mktemp("reference")
    out = folder / "ds"
    result = balance_in_process(write_two_shard_manifest(folder), out)
    assert result.complete, result.summary
    return out


def copy_dataset(reference: Path, dest: Path) -> Path:
    """A copy of the reference dataset and its manifest (same manifest_source name, so it resumes)."""
    import shutil

    shutil.copytree(reference, dest)
    return dest
