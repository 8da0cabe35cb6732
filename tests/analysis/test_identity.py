"""Identity backends: ArcFace through a tiny ONNX with the real signature; dlib with its real weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facegen.analysis import get_backend
from facegen.analysis.align import ARCFACE_REFERENCE_112, arcface_crop, five_points, similarity_transform
from facegen.errors import FacegenError


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = np.deg2rad(17), 0.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_arcface_crop_puts_the_five_points_on_the_reference(mesh, astronaut):
    face = mesh.detect(astronaut)
    crop = arcface_crop(astronaut, face, 112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    m = similarity_transform(five_points(face), ARCFACE_REFERENCE_112)
    mapped = five_points(face) @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - ARCFACE_REFERENCE_112).max() < 8.0  # a real face fits the template to a few px
    # Re-detecting on the aligned crop finds the eyes near the reference positions.
    again = mesh.detect(np.asarray(Image.fromarray(crop).resize((224, 224))))
    assert again is not None
    eyes = again.points[[468, 473], :2] * 112
    assert np.abs(eyes - ARCFACE_REFERENCE_112[:2]).max() < 6.0


def test_arcface_tiny_onnx_end_to_end(models_dir, mesh, astronaut):
    backend = get_backend("arcface", models_dir=models_dir)
    face = mesh.detect(astronaut)
    emb = backend.embed(astronaut, face)
    assert emb.shape == (512,) and emb.dtype == np.float32
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(emb, backend.embed(astronaut, face))  # deterministic
    # Batch path equals the single path; a different crop gives a different embedding.
    crop = backend.align(astronaut, face)
    batch = backend.embed_aligned([crop, crop[:, ::-1]])
    np.testing.assert_allclose(batch[0], emb, atol=1e-6)
    assert backend.similarity(batch[0], batch[1]) < 0.999


def test_arcface_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FacegenError, match="arcface.onnx"):
        get_backend("arcface", models_dir=tmp_path)


def test_arcface_rejects_wrong_input_size(tmp_path, make_tiny_onnx):
    make_tiny_onnx(tmp_path / "arcface.onnx", input_name="input.1", size=96, outputs=512, patch=8, seed=0)
    with pytest.raises(FacegenError, match="expected"):
        get_backend("arcface", models_dir=tmp_path)


@pytest.fixture(scope="module")
def dlib_backend():
    return get_backend("dlib")


def test_dlib_same_face_closer_than_different_people(dlib_backend, astronaut, grace_hopper):
    a = dlib_backend.embed(astronaut)
    flipped = dlib_backend.embed(np.ascontiguousarray(astronaut[:, ::-1]))
    resized = dlib_backend.embed(np.asarray(Image.fromarray(astronaut).resize((384, 384), Image.Resampling.BILINEAR)))
    other = dlib_backend.embed(grace_hopper)
    for e in (a, flipped, resized, other):
        assert e is not None and e.shape == (128,)
        assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    sim = dlib_backend.similarity
    same = [sim(a, flipped), sim(a, resized), sim(flipped, resized)]
    different = [sim(a, other), sim(flipped, other), sim(resized, other)]
    assert min(same) > max(different)
    assert min(same) > dlib_backend.match_threshold > max(different)


def test_dlib_uses_mediapipe_box_when_given(dlib_backend, mesh, astronaut):
    face = mesh.detect(astronaut)
    assert dlib_backend.similarity(dlib_backend.embed(astronaut, face), dlib_backend.embed(astronaut)) > 0.9


def test_dlib_no_face(dlib_backend):
    from skimage import data

    assert dlib_backend.embed(np.ascontiguousarray(data.rocket())) is None


def test_embed_id_photos(tmp_path, models_dir, astronaut):
    from facegen.analysis.id_photos import embed_id_photos

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    Image.fromarray(astronaut).resize((256, 256)).save(tmp_path / "b.png")
    emb = embed_id_photos([tmp_path / "a.png", tmp_path / "b.png"], models_dir=models_dir)
    assert emb.shape == (2, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    (tmp_path / "c.jpg").write_text("nope")
    with pytest.raises(FacegenError, match="c.jpg"):
        embed_id_photos([tmp_path / "c.jpg"], models_dir=models_dir)


def test_dlib_same_face_closer_than_other_people_in_a_group_photo(dlib_backend, group_photo):
    """Each person of t1.jpg vs. their own flipped/resized crop, against every other person."""
    import dlib

    boxes = dlib.get_frontal_face_detector()(group_photo, 1)
    assert len(boxes) == 6
    h, w = group_photo.shape[:2]
    people = []
    for box in boxes:
        m = box.width() // 2  # margin so the detector finds the face again inside the crop
        crop = group_photo[max(box.top() - m, 0) : min(box.bottom() + m, h), max(box.left() - m, 0) : min(box.right() + m, w)]
        crop = np.ascontiguousarray(crop)
        variants = [
            crop,
            np.ascontiguousarray(crop[:, ::-1]),
            np.asarray(Image.fromarray(crop).resize((crop.shape[1] * 2, crop.shape[0] * 2), Image.Resampling.BILINEAR)),
        ]
        embeddings = [dlib_backend.embed(v) for v in variants]
        assert all(e is not None for e in embeddings)
        people.append(embeddings)
    sim = dlib_backend.similarity
    same = [sim(p[0], p[k]) for p in people for k in (1, 2)]
    different = [sim(a[0], b[k]) for i, a in enumerate(people) for j, b in enumerate(people) if i != j for k in range(3)]
    assert min(same) > max(different)
