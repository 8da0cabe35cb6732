"""Issue 12 item 6: a stop at any moment -- Ctrl-C or SIGTERM, including during Ray's start-up -- exits
130 with "interrupted" and no traceback, leaves nothing half-written, shuts Ray down within seconds, and
the same command then resumes to a dataset byte-identical to an uninterrupted run.

Old behaviour: SIGTERM during Ray start-up exited 15, 143 or 134 (C++ stack dump); SIGINT once
segfaulted after printing "interrupted"; Ray's processes lingered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import FACEGEN, balance_in_process, shard_bytes

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command name of every live descendant of `pid`."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        names[int(entry)] = name
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = names[child]
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


MOMENTS = [
    ("ray-start-up", signal.SIGTERM),  # inside ray.init: gcs_server is up, the driver is not connected yet
    ("plan", signal.SIGINT),  # writer lock taken, plan being written
    ("distribute", signal.SIGTERM),  # plan and verification done, before Ray is joined
    ("shard-done", signal.SIGINT),  # on Ray: one shard finished, the next in flight on an actor
    ("finalize", signal.SIGTERM),  # every shard done, before labels / reports / summary
]


@pytest.mark.parametrize("moment,sig", MOMENTS, ids=[m for m, _ in MOMENTS])
def test_stop_at_any_moment_exits_130_and_resumes_byte_identically(moment, sig, reference_dataset: Path, ray_local, tmp_path: Path):
    manifest = reference_dataset.parent / "m.yaml"
    out = tmp_path / "ds"
    marker = tmp_path / "paused"
    cmd = [*FACEGEN, "balance", "-m", str(manifest), "-o", str(out), "--no-progress"]
    env = dict(os.environ)
    if moment == "ray-start-up":
        env.pop("RAY_ADDRESS", None)  # a new private local Ray, started by the command
        cmd += ["--num-actors", "1", "--cpus-per-actor", "1"]
    elif moment == "shard-done":
        cmd += ["--address", ray_local.get_runtime_context().gcs_address, "--num-actors", "1", "--cpus-per-actor", "0.5"]
        env["FACEGEN_DRILL_PAUSE"] = f"{moment}:{marker}"
    else:
        cmd += ["--in-process"]
        env["FACEGEN_DRILL_PAUSE"] = f"{moment}:{marker}"
    # SIGINT with Python's default handler, as a terminal's Ctrl-C (background children start with it ignored)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 240
    try:
        while True:
            assert proc.poll() is None, f"ended before {moment}: {proc.communicate()}"
            assert time.monotonic() < deadline, f"never reached {moment}"
            if moment == "ray-start-up":
                seen.update(_descendants(proc.pid))
                if "gcs_server" in seen.values():
                    break
            elif marker.exists():
                break
            time.sleep(0.02)
        proc.send_signal(sig)
        stopped = time.monotonic()
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, f"{moment}: exit {proc.returncode}; {err[-3000:]}"
    assert "interrupted" in err and "Traceback" not in err and "core dumped" not in err.lower(), err[-3000:]
    assert seconds < 30, f"took {seconds:.1f} s to stop"
    if moment == "ray-start-up":
        give_up = time.monotonic() + 5
        while [p for p in seen if _alive(p)] and time.monotonic() < give_up:
            time.sleep(0.1)
        assert not [seen[p] for p in seen if _alive(p)], "Ray processes outlived the stop by > 5 s"
    if out.exists():
        assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name]  # nothing half-written
        assert not (out / "summary.json").exists()  # never a summary of an unfinished run
    result = balance_in_process(manifest, out)  # the same command resumes ...
    assert result.complete
    assert shard_bytes(out) == shard_bytes(reference_dataset)  # ... to exactly the uninterrupted dataset
