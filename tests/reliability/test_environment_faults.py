"""Issue 12 item 5: every environmental fault is one `error:` line naming the path or part and what to
do, exit 2 (README "Exit codes"); the model folder is checked in the driver before actors start, and an
actor that cannot start reports its real cause. Resuming after the fault is fixed is byte-identical.

Old behaviour: tracebacks for a file as --out, a read-only file system (even re-running a finished
dataset) and a full disk; "no actors left (all died)" for a broken model folder under Ray.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from facegen.errors import FacegenError

from .conftest import balance_in_process, copy_dataset, shard_bytes

IN_PROCESS = ("--in-process", "--no-progress")


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tiny tmpfs at `path` (root only); skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_file_as_out_is_one_line(tmp_path: Path, cli, base_manifest: str):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(base_manifest)
    (tmp_path / "taken").write_text("not a folder")
    for out in ("taken", "taken/ds"):
        cli("balance", "-m", str(manifest), "-o", out, *IN_PROCESS, timeout=120).assert_one_line_error(
            out, "not a folder", "choose a folder path", rss_mib=2000)
    assert (tmp_path / "taken").read_text() == "not a folder"


@pytest.mark.slow  # loads the manifest and hashes the model before reaching the file system
def test_read_only_file_system_even_for_a_finished_dataset(reference_dataset: Path, tmp_path: Path, cli):
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "4m") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a read-only tmpfs")
        out = copy_dataset(reference_dataset, mnt / "ds")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        run = cli("balance", "-m", str(reference_dataset.parent / "m.yaml"), "-o", str(out), *IN_PROCESS, timeout=120)
        run.assert_one_line_error(str(out), "read-only file system", "writable --out", seconds=60, rss_mib=3000)


@pytest.mark.slow  # a run that hits the full disk, then a resume that generates the missing shard
def test_full_disk_is_one_line_and_the_resume_is_byte_identical(reference_dataset: Path, tmp_path: Path, cli):
    manifest = reference_dataset.parent / "m.yaml"
    mnt = tmp_path / "small"
    with tmpfs(mnt, "1m") as mounted:
        out = copy_dataset(reference_dataset, mnt / "ds")
        for name in ("000001.tar", "000001.parquet", "000001_stats.json"):
            (out / "shards" / name).unlink()  # shard 1 is still to be made
        for name in ("labels.parquet", "summary.json", "report.png", "preview.jpg"):
            (out / name).unlink()
        if mounted:  # fill the disk to the last byte
            with contextlib.suppress(OSError), open(mnt / "filler", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
            run = cli("balance", "-m", str(manifest), "-o", str(out), *IN_PROCESS, timeout=120)
            expected = "no space left"
        else:  # no mount allowed: the process's file size limit is the "full disk"
            import resource

            limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # noqa: E731
            from .conftest import FACEGEN

            proc = subprocess.run([*FACEGEN, "balance", "-m", str(manifest), "-o", str(out), *IN_PROCESS],
                                  cwd=tmp_path, capture_output=True, text=True, preexec_fn=limit, timeout=120)
            from .conftest import CliRun

            run = CliRun(proc.returncode, proc.stdout, proc.stderr, 0.0, 0.0, None)
            expected = "file too large"
        run.assert_one_line_error(expected, "re-run", seconds=60, rss_mib=3000)
        assert not [p for p in (out / "shards").iterdir() if ".tmp-" in p.name]  # nothing half-written
        (mnt / "filler").unlink(missing_ok=True)  # space freed: the same command resumes
        result = balance_in_process(manifest, out)
        assert result.complete
        assert shard_bytes(out) == shard_bytes(reference_dataset)


@pytest.mark.slow  # loads the manifest and hashes the model before reaching the file system
def test_permission_denied_is_one_line(reference_dataset: Path, tmp_path: Path, cli):
    out = tmp_path / "locked"
    out.mkdir()
    if os.geteuid() == 0:  # root ignores modes; an immutable folder refuses even root
        if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
            pytest.skip("needs chattr (root) or a non-root user")
        undo = ["chattr", "-i", str(out)]
    else:
        out.chmod(0o555)
        undo = ["chmod", "755", str(out)]
    try:
        run = cli("balance", "-m", str(reference_dataset.parent / "m.yaml"), "-o", str(out), *IN_PROCESS, timeout=120)
        run.assert_one_line_error(str(out), "not permitted" if os.geteuid() == 0 else "permission denied", "chmod", seconds=60, rss_mib=3000)
    finally:
        subprocess.run(undo, check=True)
    assert not list(out.iterdir())


@pytest.mark.slow  # the tiny model folder + a CLI that loads the manifest
def test_broken_model_folder_is_refused_by_the_driver_before_ray(tiny_model_dir: Path, tmp_path: Path, cli, base_manifest: str):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "unet")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(base_manifest.replace("model: tiny", f"model: {broken}"))
    run = cli("balance", "-m", str(manifest), "-o", str(tmp_path / "ds"), "--no-progress", timeout=120)  # under Ray
    run.assert_one_line_error(str(broken), "unet", seconds=60, rss_mib=3000)
    assert "ray" not in run.err.lower()


@pytest.mark.slow  # real Ray actors
def test_actor_start_up_failure_names_its_real_cause(ray_local, tmp_path: Path):
    """The driver sees the model, the actors' node does not (here: a path that exists nowhere)."""
    from facegen.runner import RayDistributor, ShardTask, assign_shards, run_shards, units_from_table
    from facegen.runner.generation import GenerationWorker

    factory = functools.partial(GenerationWorker, str(tmp_path / "weights-not-on-this-node"), str(tmp_path), None)
    task = ShardTask(factory, str(tmp_path / "ds"), "fp")
    units = units_from_table(assign_shards(pa.table({"key": ["000000000", "000000001"]}), 1))
    with pytest.raises(FacegenError, match="weights-not-on-this-node: model folder does not exist") as info:
        run_shards(units, task, RayDistributor(1, num_cpus=0.5), progress=False)
    assert "actors started" in str(info.value)
