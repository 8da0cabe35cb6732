"""Hostile manifests through the real CLI in a child process: one `error:` line, exit 2, < 5 s, < 500 MB.

Issue 12 item 3: an alias bomb took ~9 GB (the line mapper expanded every alias), a 50 MB manifest ran
past 60 s at 1.8 GB, `images_per_identity: 10**12` validated and then died allocating 14.6 TiB. The
watchdog in conftest.py kills a child past its budget, so a regression fails fast instead of
exhausting the machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BUDGET_S, BUDGET_MIB = 5.0, 500.0


def _alias_bomb(base_manifest: str) -> str:
    lines = [base_manifest, 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghi":  # 9**9 ~ 3.9e8 strings once expanded
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("verb", ["validate", "plan"])
def test_alias_bomb_is_refused_cheaply(verb: str, tmp_path: Path, cli, base_manifest: str):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(base_manifest))
    args = ["manifest", "validate", str(path)] if verb == "validate" else ["plan", "--manifest", str(path), "--out", str(tmp_path / "out")]
    run = cli(*args, timeout=30, rss_limit_mib=1500)
    line = run.assert_one_line_error(f"{path}:", "aliases", seconds=BUDGET_S, rss_mib=BUDGET_MIB)
    assert "FACEGEN_MAX_MANIFEST_VALUES" in line
    assert not (tmp_path / "out").exists()


def test_recursive_alias_and_deep_nesting_are_one_line(tmp_path: Path, cli, base_manifest: str):
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text(base_manifest + "extra: &x [1, *x]\n")
    cli("manifest", "validate", str(recursive), timeout=30).assert_one_line_error(f"{recursive}:", "recursive alias")
    deep = tmp_path / "deep.yaml"
    deep.write_text(base_manifest + "extra: " + "[" * 20_000 + "]" * 20_000 + "\n")
    cli("manifest", "validate", str(deep), timeout=30).assert_one_line_error(str(deep), "nested too deeply")


def test_50_mb_manifest_is_refused_before_parsing(tmp_path: Path, cli, base_manifest: str):
    path = tmp_path / "huge.yaml"
    head, tail = base_manifest.split("    yaw: {uniform: [-30, 30], bins: 2}\n")
    with open(path, "w") as f:  # valid YAML: a manifest whose yaw histogram has 50 MB of weights
        f.write(head + "    yaw:\n      histogram:\n        weights: [")
        chunk = ", ".join(["1.0"] * 100_000) + ", "
        while f.tell() < 50 * 2**20:
            f.write(chunk)
        f.write("1.0]\n        edges: [0, 1]\n" + tail)
    assert path.stat().st_size >= 50 * 2**20
    for args in (["manifest", "validate", str(path)], ["plan", "--manifest", str(path), "--out", str(tmp_path / "out")]):
        run = cli(*args, timeout=30)
        line = run.assert_one_line_error(str(path), "FACEGEN_MAX_MANIFEST_BYTES", seconds=BUDGET_S, rss_mib=BUDGET_MIB)
        assert "MiB" in line
    assert not (tmp_path / "out").exists()


def test_10_to_the_12_images_is_refused_with_its_line(tmp_path: Path, cli, base_manifest: str):
    path = tmp_path / "m.yaml"
    path.write_text(base_manifest.replace("images_per_identity: 1", "images_per_identity: 1000000000000"))
    line_no = base_manifest.splitlines().index("images_per_identity: 1") + 1
    for args in (["manifest", "validate", str(path)], ["plan", "--manifest", str(path), "--out", str(tmp_path / "out")]):
        run = cli(*args, timeout=30, rss_limit_mib=1500)
        line = run.assert_one_line_error(f"{path}:{line_no}: images_per_identity:", "2,000,000,000,000 images", "max_images",
                                         seconds=BUDGET_S, rss_mib=BUDGET_MIB)
        assert "FACEGEN_MAX_IMAGES" in line
    assert not (tmp_path / "out").exists()


def test_image_and_identity_caps_are_configurable(tmp_path: Path, cli, base_manifest: str):
    path = tmp_path / "m.yaml"
    path.write_text(base_manifest.replace("images_per_identity: 1", "images_per_identity: 300"))
    assert cli("manifest", "validate", str(path)).code == 0
    # the environment lowers the default cap ...
    cli("manifest", "validate", str(path), env={"FACEGEN_MAX_IMAGES": "500"}).assert_one_line_error(
        "images_per_identity", "600 images", "above the limit of 500")
    # ... and the manifest's own `limits:` section decides for that manifest
    path.write_text(path.read_text() + "limits: {max_images: 1000}\n")
    assert cli("manifest", "validate", str(path), env={"FACEGEN_MAX_IMAGES": "500"}).code == 0
    path.write_text(path.read_text().replace("max_images: 1000", "max_images: 100"))
    cli("manifest", "validate", str(path)).assert_one_line_error("images_per_identity", "above the limit of 100", "limits.max_images")
    # identities: a 30-row embeddings file against a cap of 10, named at its line
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).standard_normal((30, 512)).astype(np.float32))
    ids = tmp_path / "ids.yaml"
    ids.write_text(base_manifest.replace("random: {count: 2, max_similarity: 0.3}", "embeddings: ids.npy"))
    line_no = base_manifest.splitlines().index("  random: {count: 2, max_similarity: 0.3}") + 1
    cli("manifest", "validate", str(ids), env={"FACEGEN_MAX_IDENTITIES": "10"}).assert_one_line_error(
        f"{ids}:{line_no}: identities.embeddings:", "30 identities", "above the limit of 10")
    cli("manifest", "validate", str(ids), env={"FACEGEN_MAX_IDENTITIES": "lots"}).assert_one_line_error(
        "FACEGEN_MAX_IDENTITIES", "positive whole number")


def test_memory_estimate_is_checked_before_planning(tmp_path: Path, cli, base_manifest: str):
    path = tmp_path / "m.yaml"
    path.write_text(base_manifest)
    out = tmp_path / "out"
    run = cli("plan", "--manifest", str(path), "--out", str(out), "--no-plot", env={"FACEGEN_MAX_PLAN_MEMORY": "1000000"})
    run.assert_one_line_error(f"{path}:", "needs about", "FACEGEN_MAX_PLAN_MEMORY")
    assert not (out / "plan.parquet").exists()
    assert cli("plan", "--manifest", str(path), "--out", str(out), "--no-plot").code == 0
    assert (out / "plan.parquet").exists()


def test_non_utf8_manifest_is_one_line(tmp_path: Path, cli, base_manifest: str):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(base_manifest.encode() + "# caf\xe9\n".encode("latin-1"))
    cli("manifest", "validate", str(path)).assert_one_line_error(str(path), "UTF-8")
