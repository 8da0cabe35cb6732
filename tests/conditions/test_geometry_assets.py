"""The package data files are exactly what scripts/build_face_assets.py makes (real MediaPipe run)."""

import runpy
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_face_assets.py"


def _data(name):
    return resources.files("facegen.conditions").joinpath("data", name)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("assets")
    argv = sys.argv
    sys.argv = [str(SCRIPT), "--out", str(out)]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        sys.argv = argv
    return out


def test_topology_rebuilds_identically(rebuilt):
    with resources.as_file(_data("face_mesh_topology.npz")) as shipped, np.load(shipped) as a, np.load(
        rebuilt / "face_mesh_topology.npz"
    ) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


def test_template_and_demo_bank_rebuild_to_the_shipped_values(rebuilt):
    with resources.as_file(_data("neutral_template.npy")) as shipped:
        np.testing.assert_allclose(np.load(rebuilt / "neutral_template.npy"), np.load(shipped), atol=1e-5)
    with resources.as_file(_data("demo_exemplars.parquet")) as shipped:
        a, b = pq.read_table(shipped), pq.read_table(rebuilt / "demo_exemplars.parquet")
    assert a.schema.equals(b.schema) and a.num_rows == b.num_rows
    np.testing.assert_allclose(
        np.stack(a.column("landmarks").to_numpy(zero_copy_only=False)),
        np.stack(b.column("landmarks").to_numpy(zero_copy_only=False)),
        atol=1e-5,
    )
