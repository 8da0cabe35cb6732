"""Malformed manifests through the real CLI: exit 2, exactly one stderr line naming field (and line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.cli.main import main

BAL = "balance: {source: labels.parquet, column: emotion, total: 10}\n"

# (id, manifest text, field named in the message, YAML line of the error or None)
CASES = [
    ("unknown-top-key", ({}, "colour: red\n"), "colour", 21),
    ("unknown-nested-key", ({8: "  batchsize: 4"},), "sampler.batchsize", 8),
    ("version-2", ({1: "version: 2"},), "version", 1),
    ("version-missing", ({1: "# no version"},), "version", None),
    ("seed-negative", ({2: "seed: -1"},), "seed", 2),
    ("seed-string", ({2: 'seed: "abc"'},), "seed", 2),
    ("scheduler-unknown", ({5: "  scheduler: euler"},), "sampler.scheduler", 5),
    ("steps-zero", ({6: "  steps: 0"},), "sampler.steps", 6),
    ("steps-float", ({6: "  steps: 4.5"},), "sampler.steps", 6),
    ("guidance-negative", ({7: "  guidance: {id: -1}"},), "sampler.guidance.id", 7),
    ("image-size-not-8", ({8: "  image_size: 100"},), "sampler.image_size", 8),
    ("batch-size-zero", ({8: "  batch_size: 0"},), "sampler.batch_size", 8),
    ("shard-size-negative", ({10: "  samples_per_shard: -5"},), "output.samples_per_shard", 10),
    ("image-format-gif", ({11: "  image_format: gif"},), "output.image_format", 11),
    ("quality-101", ({11: "  quality: 101"},), "output.quality", 11),
    ("store-landmark-not-bool", ({11: "  store_landmark_image: maybe"},), "output.store_landmark_image", 11),
    ("identities-empty", ({12: "identities: {}", 13: ""},), "identities", 12),
    ("identities-two-sources", ({13: "  random: {count: 4}\n  embeddings: ids.npy"},), "identities", 12),
    ("random-count-zero", ({13: "  random: {count: 0}"},), "identities.random.count", 13),
    ("random-count-negative", ({13: "  random: {count: -3}"},), "identities.random.count", 13),
    ("max-similarity-1.5", ({13: "  random: {count: 4, max_similarity: 1.5}"},), "identities.random.max_similarity", 13),
    ("embeddings-missing-file", ({13: "  embeddings: nope.npy"},), "identities.embeddings", 13),
    ("embeddings-wrong-shape", ({13: "  embeddings: small.npy"},), "identities.embeddings", 13),
    ("embeddings-parquet-no-identity", ({13: "  embeddings: noid.parquet"},), "identities.embeddings", 13),
    ("folder-missing", ({13: "  folder: no_such_dir"},), "identities.folder", 13),
    ("folder-empty", ({13: "  folder: empty_dir"},), "identities.folder", 13),
    ("images-per-identity-zero", ({14: "images_per_identity: 0"},), "images_per_identity", 14),
    ("images-per-identity-missing", ({14: ""},), "images_per_identity", None),
    ("emotion-sum-0.9", ({16: "  emotion: {happy: 0.5, sad: 0.4}"},), "targets.emotion", 16),
    ("emotion-unknown-class", ({16: "  emotion: {joy: 1.0}"},), "targets.emotion.joy", 16),
    ("emotion-above-1", ({16: "  emotion: {happy: 1.2, sad: -0.2}"},), "targets.emotion.happy", 16),
    ("emotion-negative", ({16: "  emotion: {happy: 1.0, sad: -0.5, fear: 0.5}"},), "targets.emotion.sad", 16),
    ("emotion-unknown-word", ({16: "  emotion: joyful"},), "targets.emotion", 16),
    ("emotion-nested", ({16: "  emotion:\n    happy: 0.5\n    sad: 0.5\n    neutral: oops"},), "targets.emotion.neutral", 19),
    ("yaw-lo-above-hi", ({18: "    yaw: {uniform: [30, -30]}"},), "targets.pose.yaw.uniform", 18),
    ("yaw-beyond-90", ({18: "    yaw: {uniform: [-120, 0]}"},), "targets.pose.yaw.uniform", 18),
    ("yaw-uniform-3-values", ({18: "    yaw: {uniform: [1, 2, 3]}"},), "targets.pose.yaw.uniform", 18),
    ("yaw-two-kinds", ({18: "    yaw: {uniform: [0, 1], normal: {mean: 0, std: 1}}"},), "targets.pose.yaw", 18),
    ("yaw-normal-std-zero", ({18: "    yaw: {normal: {mean: 0, std: 0}}"},), "targets.pose.yaw.normal.std", 18),
    ("yaw-hist-length", ({18: "    yaw: {histogram: {edges: [0, 1, 2], weights: [1, 1, 1]}}"},), "targets.pose.yaw.histogram", 18),
    ("yaw-hist-unsorted", ({18: "    yaw: {histogram: {edges: [0, 5, 2], weights: [1, 1]}}"},), "targets.pose.yaw.histogram.edges", 18),
    ("yaw-hist-negative-weight", ({18: "    yaw: {histogram: {edges: [0, 5, 10], weights: [1, -1]}}"},), "targets.pose.yaw.histogram.weights", 18),
    ("yaw-bins-zero", ({18: "    yaw: {uniform: [-30, 30], bins: 0}"},), "targets.pose.yaw.bins", 18),
    ("yaw-word", ({18: "    yaw: sideways"},), "targets.pose.yaw", 18),
    ("pose-unknown-axis", ({18: "    tilt: 5"},), "targets.pose.tilt", 18),
    ("expression-unknown", ({19: "  expression: happy"},), "targets.expression", 19),
    ("exemplars-missing", ({19: "  expression: {exemplars: bank.parquet}"},), "targets.expression.exemplars", 19),
    ("controls-unknown", ({20: "  controls: id+pose"},), "targets.controls", 20),
    ("controls-sum", ({20: "  controls: {id: 0.5, id+lmk: 0.2}"},), "targets.controls", 20),
    ("valence-override-range", ({}, "  valence_arousal: {happy: {valence: 2}}\n"), "targets.valence_arousal.happy.valence", 21),
    ("balance-source-missing", ({14: ""}, "balance: {source: missing.parquet, total: 10}\n",), "balance.source", 21),
    ("balance-total-negative", ({14: ""}, "balance: {source: labels.parquet, total: -4}\n",), "balance.total", 21),
    ("balance-and-images-per-identity", ({}, BAL), "images_per_identity", 14),
    ("balance-column-missing", ({14: ""}, "balance: {source: labels.parquet, column: mood, total: 5}\n",), "balance.column", 21),
    ("balance-bad-labels", ({14: ""}, "balance: {source: badlabels.parquet, total: 5}\n",), "balance.column", 21),
    ("model-number", ({3: "model: 5"},), "model", 3),
    # non-finite floats a range check already caught (the uncaught ones: tests/reliability/test_finite_floats.py)
    ("guidance-nan", ({7: "  guidance: {id: .nan}"},), "sampler.guidance.id", 7),
    ("max-similarity-nan", ({13: "  random: {count: 4, max_similarity: .nan}"},), "identities.random.max_similarity", 13),
    ("emotion-nan", ({16: "  emotion: {happy: .nan, sad: 1.0}"},), "targets.emotion.happy", 16),
    ("yaw-uniform-inf", ({18: "    yaw: {uniform: [-30, .inf]}"},), "targets.pose.yaw.uniform.1", 18),
    ("yaw-normal-mean-nan", ({18: "    yaw: {normal: {mean: .nan, std: 10}}"},), "targets.pose.yaw.normal.mean", 18),
    ("yaw-normal-std-inf", ({18: "    yaw: {normal: {mean: 0, std: .inf}}"},), "targets.pose.yaw.normal.std", 18),
    ("yaw-hist-weight-nan", ({18: "    yaw: {histogram: {edges: [0, 5, 10], weights: [.nan, 1]}}"},), "targets.pose.yaw.histogram.weights.0", 18),
    ("pitch-minus-inf", ({18: "    pitch: -.inf"},), "targets.pose.pitch", 18),
    ("controls-nan", ({20: "  controls: {id: .nan, id+lmk+emo: 1.0}"},), "targets.controls", 20),
    ("valence-override-nan", ({}, "  valence_arousal: {happy: {valence: .nan}}\n"), "targets.valence_arousal.happy.valence", 21),
    ("yaml-syntax", ({16: "  emotion: [uniform"},), "YAML", None),
    ("duplicate-key", ({}, "seed: 3\n"), "seed", 21),
    ("top-level-list", ("raw", "- version: 1\n"), "mapping", 1),
]


def _text(spec: tuple, manifest_text) -> str:
    if spec and spec[0] == "raw":
        return spec[1]
    args = [a for a in spec]
    replace = args[0] if args and isinstance(args[0], dict) else None
    append = next((a for a in args if isinstance(a, str)), "")
    return manifest_text(replace, append)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Side files the cases refer to (relative to the manifest's folder)."""
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32))
    np.save(tmp_path / "small.npy", np.ones((3, 128), dtype=np.float32))
    pq.write_table(pa.table({"name": ["a"], "embedding": [[0.1] * 512]}), tmp_path / "noid.parquet")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty_dir" / "notes.txt").write_text("no images here")
    pq.write_table(pa.table({"emotion": ["Happy", "Neutral", "Sad"]}), tmp_path / "labels.parquet")
    pq.write_table(pa.table({"emotion": ["Happy", "Joy"]}), tmp_path / "badlabels.parquet")
    return tmp_path


def test_case_table_is_big_and_unique():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id, text, field, line", CASES, ids=[c[0] for c in CASES])
def test_malformed_manifest_one_line_exit_2(case_id, text, field, line, files: Path, write_manifest, manifest_text, capsys):
    path = write_manifest(_text(text, manifest_text))
    code = main(["manifest", "validate", str(path)])
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(err_lines) == 1, captured.err
    message = err_lines[0]
    assert message.startswith(f"error: {path}"), message
    assert "Traceback" not in captured.err
    if field in ("YAML", "mapping"):
        assert field in message
    else:
        assert f": {field}: " in message, message
    if line is not None:
        assert message.startswith(f"error: {path}:{line}: "), message
    assert ";" in message, f"message does not say what to do: {message}"


def test_plan_with_malformed_manifest_writes_nothing(files: Path, write_manifest, manifest_text, capsys, tmp_path: Path):
    path = write_manifest(manifest_text({16: "  emotion: {happy: 0.5, sad: 0.4}"}))
    out = tmp_path / "plan_out"
    assert main(["plan", "--manifest", str(path), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (out / "plan.parquet").exists()


def test_valid_base_manifest_passes(files: Path, write_manifest, manifest_text, capsys):
    path = write_manifest(manifest_text())
    assert main(["manifest", "validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok:")


def test_missing_manifest_file(tmp_path: Path, capsys):
    assert main(["manifest", "validate", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err
