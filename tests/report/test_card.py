"""The dataset card (README.md) and report.html of a real `facegen balance` run, before and after its
labels carry in-loop measurements."""

from __future__ import annotations

import glob
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from facegen.data.inspect import format_report, inspect_dataset
from facegen.io.fs import Location
from facegen.report.card import CARD_NAME, render_card, write_dataset_card
from facegen.report.card_data import SECTIONS, collect_card_data
from facegen.report.columns import ACHIEVED, NOT_MEASURED, target_array, target_values
from facegen.report.plots import render_report


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_card_header_points_at_the_shards(card_dataset: Path) -> None:
    text = (card_dataset / CARD_NAME).read_text(encoding="utf-8")
    header = _front_matter(text)
    assert header["license"] == "apache-2.0"  # tiny preset: only facegen's own weights
    assert header["size_categories"] == ["n<1K"]
    assert "image-classification" in header["task_categories"] and "synthetic" in header["tags"]
    (config,) = header["configs"]
    (files,) = config["data_files"]
    assert config["config_name"] == "default" and files["split"] == "train"
    assert sorted(glob.glob(str(card_dataset / files["path"]))) == sorted(glob.glob(str(card_dataset / "shards" / "*.tar")))
    for section_id, title in SECTIONS:
        assert f'<a id="{section_id}"></a>' in text and f"## {title}" in text
    assert "](report.png)" in text and "](preview.jpg)" in text
    assert "| tiny | random-weight test generator (facegen) | Apache-2.0 | yes |" in text
    assert "manifest.lock.yaml" in text and "seed: 5" in text  # manifest embedded
    assert "torch" in text and "model hash" in text


def test_unmeasured_dataset_never_says_achieved(card_dataset: Path) -> None:
    card = (card_dataset / CARD_NAME).read_text(encoding="utf-8")
    html = (card_dataset / "report.html").read_text(encoding="utf-8")
    report = inspect_dataset(str(card_dataset))
    printed = format_report(report)
    assert report.ok, report.problems
    for text in (card, html, printed):
        assert NOT_MEASURED in text
        assert "achieved" not in text.lower()
    summary = json.loads((card_dataset / "summary.json").read_text())
    assert {"README.md", "report.html", "report.png", "preview.jpg"} <= set(summary["reports"])
    assert summary["report_errors"] == {}


def _with_measurements(src: Path, dst: Path) -> tuple[Path, list[str]]:
    """A copy of `src` whose labels carry measured columns (new names): all measured, two images measured
    as another emotion than their target and not accepted, plus a rejects.parquet of one image."""
    shutil.copytree(src, dst)
    labels = pq.read_table(dst / "labels.parquet")
    n = labels.num_rows
    target = np.array(target_values(labels, "emotion"), dtype=np.int8)
    measured_emotion = target.copy()
    measured_emotion[:2] = (target[:2] + 1) % 8
    accepted = np.ones(n, dtype=bool)
    accepted[:2] = False
    columns = {
        "measured": pa.array(np.ones(n, dtype=bool)),
        "face_detected": pa.array(np.ones(n, dtype=bool)),
        "measured_yaw": pa.array(target_array(labels, "yaw") + 1.0, pa.float32()),
        "measured_pitch": pa.array(np.zeros(n), pa.float32()),
        "measured_roll": pa.array(np.zeros(n), pa.float32()),
        "measured_emotion": pa.array(measured_emotion, pa.int8()),
        "measured_valence": pa.array(np.zeros(n), pa.float32()),
        "measured_arousal": pa.array(np.zeros(n), pa.float32()),
        "identity_similarity": pa.array(np.full(n, 0.8), pa.float32()),
        "landmark_nme": pa.array(np.full(n, 0.05), pa.float32()),
        "accepted": pa.array(accepted),
        "reject_reason": pa.array(["emotion" if not a else "" for a in accepted]),
        "round": pa.array(np.zeros(n), pa.int16()),
    }
    for name, values in columns.items():
        if name in labels.column_names:
            labels = labels.set_column(labels.column_names.index(name), name, values)
        else:
            labels = labels.append_column(name, values)
    pq.write_table(labels, dst / "labels.parquet")
    rejects = labels.slice(0, 1).set_column(labels.column_names.index("reject_reason"), "reject_reason", pa.array(["pose,emotion"]))
    pq.write_table(rejects, dst / "rejects.parquet")
    short = [str(name) for name in np.array(target_values(labels, "emotion_name"))[:2]]
    return dst, short


def test_measured_dataset_card_says_achieved(card_dataset: Path, tmp_path: Path) -> None:
    root, short_classes = _with_measurements(card_dataset, tmp_path / "measured")
    summary = json.loads((root / "summary.json").read_text())
    summary["verification"] = {"mode": "measure", "estimators": {"pose": "synthface", "emotion": "synthface",
                                                                 "identity": "none", "landmarks": "synthface"}}
    added = write_dataset_card(root, summary)
    assert added["report_errors"] == {}
    card = (root / CARD_NAME).read_text(encoding="utf-8")
    html = (root / "report.html").read_text(encoding="utf-8")
    for text in (card, html):
        assert ACHIEVED in text
        assert "pose" in text and "rejects by reason" in text
    assert "| synthface |" in card and "| `synthface` |" in card  # estimator listed with its licence
    assert "| emotion | 1 |" in card and "| pose | 1 |" in card  # "pose,emotion" counted under both reasons
    assert "mean identity_similarity: 0.800" in card
    data = collect_card_data(Location(str(root)), summary)
    emotion = {r.bin: r for r in data.bins.axes["emotion"]}
    assert data.measured and data.bins.measured["emotion"] and data.bins.measured["yaw"]
    assert not data.bins.measured["controls"]
    for name, missing in Counter(short_classes).items():  # mis-measured images are not accepted: short by as many
        assert emotion[name].measured_accepted == emotion[name].target - missing == emotion[name].target - emotion[name].shortfall
    assert f"| emotion | {short_classes[0]} |" in card  # listed under shortfall
    png = render_report(pq.read_table(root / "labels.parquet"), pq.read_table(root / "plan.parquet"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    printed = format_report(inspect_dataset(str(root), check_hashes=False))
    assert "achieved" in printed and NOT_MEASURED in printed  # controls are never measured


def test_foreign_readme_is_left_alone_and_no_reports_removes_the_page(card_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(card_dataset, root)
    summary = json.loads((root / "summary.json").read_text())
    added = write_dataset_card(root, dict(summary, reports=[]), reports=False)
    assert not (root / "report.html").exists()  # a stale page must not pass for this run's
    assert added["reports"] == [CARD_NAME]
    assert "was not drawn for this dataset" in (root / CARD_NAME).read_text(encoding="utf-8")
    (root / CARD_NAME).write_text("# my own notes\n", encoding="utf-8")
    added = write_dataset_card(root, summary)
    assert (root / CARD_NAME).read_text(encoding="utf-8") == "# my own notes\n"
    assert CARD_NAME in added["report_errors"] and CARD_NAME not in added["reports"]


@pytest.mark.parametrize("prefix", ["", "target_"])
def test_card_reads_either_label_naming(card_dataset: Path, tmp_path: Path, prefix: str) -> None:
    """Old datasets (`yaw`, `emotion`) and new ones (`target_yaw`, ...) give the same per-bin table."""
    root = tmp_path / "named"
    shutil.copytree(card_dataset, root)
    labels = pq.read_table(root / "labels.parquet")
    renames = {}
    for field in ("yaw", "pitch", "roll", "emotion", "emotion_name", "valence", "arousal", "emotion_probs"):
        have = f"target_{field}" if f"target_{field}" in labels.column_names else field
        renames[have] = f"{prefix}{field}"
    labels = labels.rename_columns([renames.get(n, n) for n in labels.column_names])
    pq.write_table(labels, root / "labels.parquet")
    text = render_card(collect_card_data(Location(str(root)), {}))
    assert "| neutral | 2 | 2 | 0 |" in text and "| [-30.0,-10.0] |" in text
