"""`sampler.guidance_intervals`: typed, validated at the edge, and invisible to old fingerprints."""

from __future__ import annotations

import pytest

from facegen.cli.main import main
from facegen.manifest.loader import load_manifest

INTERVALS_LINE = 9  # the line written after base line 8 (batch_size)

BAD = [
    ("lo-above-hi", "  guidance_intervals: {lmk: [0.6, 0.2]}", "sampler.guidance_intervals.lmk"),
    ("negative", "  guidance_intervals: {id: [-0.1, 0.5]}", "sampler.guidance_intervals.id"),
    ("three-values", "  guidance_intervals: {emo: [0.1, 0.2, 0.3]}", "sampler.guidance_intervals.emo"),
    ("fraction-above-1", "  guidance_intervals: {emo: [0.2, 3.0]}", "sampler.guidance_intervals"),
    ("unknown-unit", "  guidance_intervals: {unit: steps, id: [0, 1]}", "sampler.guidance_intervals.unit"),
    ("unknown-branch", "  guidance_intervals: {pose: [0, 1]}", "sampler.guidance_intervals.pose"),
    ("nan", "  guidance_intervals: {id: [.nan, 1]}", "sampler.guidance_intervals.id.0"),
    ("string", "  guidance_intervals: {id: middle}", "sampler.guidance_intervals.id"),
]


@pytest.mark.parametrize("line, field", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_guidance_intervals_one_line_exit_2(line, field, write_manifest, manifest_text, capsys):
    path = write_manifest(manifest_text({8: "  batch_size: 4\n" + line}))
    code = main(["manifest", "validate", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {path}:{INTERVALS_LINE}: "), err[0]
    assert f": {field}: " in err[0] and ";" in err[0], err[0]


def test_guidance_intervals_parse_and_reach_the_worker_settings(write_manifest, manifest_text):
    from facegen.runner.generation import GenerationSettings

    path = write_manifest(manifest_text({8: "  batch_size: 4\n  guidance_intervals: {unit: sigma, id: [0.28, 5.42], lmk: [0.5, 14]}"}))
    manifest = load_manifest(path)
    got = manifest.sampler.guidance_intervals
    assert got.unit == "sigma" and got.id == [0.28, 5.42] and got.lmk == [0.5, 14.0] and got.emo is None
    settings = GenerationSettings.from_manifest(manifest)
    assert settings.guidance_intervals == {"unit": "sigma", "id": [0.28, 5.42], "lmk": [0.5, 14.0], "emo": None}
    assert manifest.model_dump(mode="json")["sampler"]["guidance_intervals"] == settings.guidance_intervals
    hash(settings)  # the settings stay hashable


def test_no_intervals_keeps_the_old_manifest_dump(write_manifest, manifest_text):
    """Manifests without the field dump (and so fingerprint) exactly as before the field existed."""
    from facegen.runner.generation import GenerationSettings

    manifest = load_manifest(write_manifest(manifest_text()))
    assert manifest.sampler.guidance_intervals is None
    assert "guidance_intervals" not in manifest.model_dump(mode="json")["sampler"]
    assert GenerationSettings.from_manifest(manifest).guidance_intervals is None


def test_intervals_reach_the_sample_json_through_the_runner(tmp_path, tiny_model_dir):
    """A manifest's intervals drive generation (in-process balance) and each sample's JSON records them."""
    import json
    import tarfile

    from facegen.runner.balance import BalanceConfig, run_balance

    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\n"
        f"model: {tiny_model_dir}\n"
        "sampler: {steps: 2, batch_size: 4, guidance_intervals: {lmk: [0.0, 0.5], emo: [0.5, 1.0]}}\n"
        "output: {samples_per_shard: 4, image_format: png}\n"
        "identities: {random: {count: 2}}\n"
        "images_per_identity: 2\n"
        "targets: {controls: id+lmk+emo}\n",
        encoding="utf-8",
    )
    out = tmp_path / "ds"
    result = run_balance(BalanceConfig(manifest=manifest, out=str(out), distributor="in-process", progress=False, reports=False))
    assert result.complete, result.summary
    metas = []
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            metas += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert len(metas) == 4
    assert all(m["guidance_intervals"] == {"unit": "fraction", "id": None, "lmk": [0.0, 0.5], "emo": [0.5, 1.0]} for m in metas)
