"""Issue 12 item 4: every float in a manifest is finite, or one error line naming file:LINE and field.

YAML's .nan passes every range check (comparisons with NaN are False): `uniform: [.nan, .nan]`,
a NaN `clip` and `roll: .nan` all validated, and generation then failed every sample.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facegen.cli.main import main

POSE_LINE = "    yaw: {uniform: [-30, 30], bins: 2}"

# (id, replacement for the yaw line or (old, new), field named in the error). Each of these said "ok"
# before; non-finite values that range checks already caught (guidance, emotion shares, std, ...) are
# covered in tests/manifest/test_manifest_errors.py.
CASES = [
    ("uniform-nan", "    yaw: {uniform: [.nan, .nan]}", "targets.pose.yaw.uniform"),
    ("uniform-one-nan", "    yaw: {uniform: [-10, .nan]}", "targets.pose.yaw.uniform"),
    ("normal-clip-nan", "    yaw: {normal: {mean: 0, std: 10, clip: [.nan, 20]}}", "targets.pose.yaw.normal.clip"),
    ("yaw-constant-nan", "    yaw: .nan", "targets.pose.yaw"),
    ("roll-nan", POSE_LINE + "\n    roll: .nan", "targets.pose.roll"),
    ("histogram-edge-nan", "    yaw: {histogram: {edges: [0, .nan, 10], weights: [1, 1]}}", "targets.pose.yaw.histogram.edges"),
]

MANIFEST = """\
version: 1
seed: 0
model: tiny
sampler:
  scheduler: dpmpp
  steps: 1
output: {samples_per_shard: 2}
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


def _text(change) -> str:
    old, new = (POSE_LINE, change) if isinstance(change, str) else change
    assert old in MANIFEST
    return MANIFEST.replace(old, new)


@pytest.mark.parametrize("case_id, change, field", CASES, ids=[c[0] for c in CASES])
def test_non_finite_float_is_one_line_with_its_line(case_id, change, field, tmp_path: Path, capsys):
    text = _text(change)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    bad_line = next(i for i, line in enumerate(text.splitlines(), 1) if ".nan" in line or ".inf" in line)
    code = main(["manifest", "validate", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    message = err[0]
    assert message.startswith(f"error: {path}:"), message
    line = int(message[len(f"error: {path}:"):].split(":", 1)[0])
    # the line of the value, or of the key whose (flow) mapping holds it
    assert line <= bad_line and text.splitlines()[line - 1].strip().split(":")[0] in (field.split(".")[-1], *field.split(".")), message
    assert f": {field}" in message, message
    assert ";" in message and ("finite" in message or "nan" in message), message


def test_plan_refuses_nan_before_writing(tmp_path: Path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    assert main(["manifest", "validate", str(path)]) == 0, capsys.readouterr().err  # the base is fine
    path.write_text(_text(POSE_LINE + "\n    roll: .nan"))
    out = tmp_path / "out"
    assert main(["plan", "--manifest", str(path), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (out / "plan.parquet").exists()
