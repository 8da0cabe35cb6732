"""Exemplar banks: round trip, validation errors naming file + column, the shipped demo bank."""

from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.conditions.exemplars import ExemplarBank, load_exemplar_bank, write_exemplar_bank
from facegen.conditions.template import neutral_template
from facegen.errors import FacegenError
from facegen.labels import EXEMPLAR_SCHEMA, NUM_EMOTIONS


def _arrays(n=5, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(NUM_EMOTIONS), n).astype(np.float32)
    return dict(
        landmarks=(neutral_template()[None] + rng.normal(0, 0.01, (n, 478, 3))).astype(np.float32),
        emotion=probs.argmax(1),
        valence=rng.uniform(-1, 1, n),
        arousal=rng.uniform(-1, 1, n),
        emotion_probs=probs,
    )


@pytest.fixture
def bank_file(tmp_path):
    path = tmp_path / "bank.parquet"
    write_exemplar_bank(path, exemplar=np.array([7, 3, 9, 1, 4]), **_arrays())
    return path


def test_round_trip_keeps_every_value_sorted_by_id(bank_file):
    src = _arrays()
    bank = load_exemplar_bank(bank_file)
    assert isinstance(bank, ExemplarBank) and len(bank) == 5
    np.testing.assert_array_equal(bank.exemplar, [1, 3, 4, 7, 9])
    order = np.argsort([7, 3, 9, 1, 4])
    np.testing.assert_array_equal(bank.landmarks, src["landmarks"][order])
    np.testing.assert_array_equal(bank.emotion, src["emotion"][order])
    np.testing.assert_allclose(bank.valence, src["valence"][order].astype(np.float32))
    np.testing.assert_array_equal(bank.emotion_probs, src["emotion_probs"][order])
    vec = bank.emotion_vectors([0, 2])
    assert vec.shape == (2, 10) and vec.dtype == np.float32
    np.testing.assert_allclose(vec[1, 2:], bank.emotion_probs[2])
    assert pq.read_schema(bank_file).equals(EXEMPLAR_SCHEMA)
    assert bank.rows_of_emotion(int(bank.emotion[0]))[0] == 0


def _rewrite(path, out, mutate):
    table = pq.read_table(path)
    pq.write_table(mutate(table), out)
    return out


@pytest.mark.parametrize("column", EXEMPLAR_SCHEMA.names)
def test_missing_column_names_file_and_column(bank_file, tmp_path, column):
    bad = _rewrite(bank_file, tmp_path / "bad.parquet", lambda t: t.drop_columns([column]))
    with pytest.raises(FacegenError, match=rf"bad\.parquet: missing column '{column}'"):
        load_exemplar_bank(bad)


def test_list_columns_with_variable_lists_of_the_right_length_are_accepted(bank_file, tmp_path):
    def to_var_lists(t):
        col = t.column("landmarks").cast(pa.list_(pa.float64()))
        return t.set_column(t.schema.get_field_index("landmarks"), "landmarks", col)

    ok = _rewrite(bank_file, tmp_path / "var.parquet", to_var_lists)
    np.testing.assert_array_equal(load_exemplar_bank(ok).landmarks, load_exemplar_bank(bank_file).landmarks)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("landmarks", pa.array([[0.5] * 10] * 5, pa.list_(pa.float32())), "column 'landmarks' has type"),
        ("emotion", pa.array(["happy"] * 5), "column 'emotion' has type"),
        ("emotion", pa.array([0, 1, 2, 8, 1], pa.int8()), "column 'emotion': value 8"),
        ("valence", pa.array([0.0, 2.0, 0.0, 0.0, 0.0], pa.float32()), "column 'valence'"),
        ("arousal", pa.array([0.0, None, 0.0, 0.0, 0.0], pa.float32()), "column 'arousal' has 1 null"),
        ("exemplar", pa.array([1, 1, 2, 3, 4], pa.int32()), "column 'exemplar': ids must be unique"),
        ("emotion_probs", pa.array([[0.5] * 8] * 5, pa.list_(pa.float32(), 8)), "row 0 sums to 4.0000"),
    ],
)
def test_bad_values_and_types_name_the_column(bank_file, tmp_path, column, value, message):
    def replace(t):
        return t.set_column(t.schema.get_field_index(column), column, value)

    bad = _rewrite(bank_file, tmp_path / "bad.parquet", replace)
    with pytest.raises(FacegenError, match=message) as info:
        load_exemplar_bank(bad)
    assert "bad.parquet" in str(info.value)


def test_missing_and_non_parquet_files(tmp_path):
    with pytest.raises(FacegenError, match="nope.parquet: exemplar bank file not found"):
        load_exemplar_bank(tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("landmarks,emotion\n1,2\n")
    with pytest.raises(FacegenError, match="junk.parquet: not a readable Parquet file"):
        load_exemplar_bank(junk)


def test_writer_rejects_inconsistent_arrays_and_leaves_no_file(tmp_path):
    arrays = _arrays()
    arrays["emotion_probs"] = arrays["emotion_probs"] * 2
    with pytest.raises(ValueError, match="emotion_probs"):
        write_exemplar_bank(tmp_path / "b.parquet", **arrays)
    assert not list(tmp_path.iterdir())


def test_shipped_demo_bank_loads_and_covers_every_class():
    ref = resources.files("facegen.conditions").joinpath("data", "demo_exemplars.parquet")
    with resources.as_file(ref) as path:
        bank = load_exemplar_bank(path)
    assert set(bank.emotion.tolist()) == set(range(NUM_EMOTIONS))
    assert (bank.emotion_probs.argmax(1) == bank.emotion).all()
    # frontal, framed, and not all the same face
    assert np.abs(bank.landmarks.mean(1)[:, :2] - 0.5).max() < 1e-4
    assert len({arr.tobytes() for arr in bank.landmarks}) == len(bank)
