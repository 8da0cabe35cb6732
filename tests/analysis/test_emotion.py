"""Emotion backends: EmoNet loads a state dict with the published key names; HSEmotion via a tiny ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.analysis import get_backend
from facegen.analysis.emonet import EmoNet, load_emonet
from facegen.analysis.hsemotion_onnx import HSEMOTION_CLASSES, to_facegen_order
from facegen.errors import FacegenError
from facegen.labels import EMOTION_NAMES

#: A sample of key names as published in emonet_8.pth (DataParallel prefix included).
PUBLISHED_KEYS = [
    "module.conv1.weight",
    "module.conv1.bias",
    "module.bn1.running_var",
    "module.conv2.downsample.0.weight",
    "module.conv2.downsample.2.weight",
    "module.m0.b1_4.conv1.weight",
    "module.m0.b2_plus_1.bn3.bias",
    "module.m1.b3_1.conv3.weight",
    "module.top_m_1.bn1.weight",
    "module.conv_last0.bias",
    "module.bn_end1.running_mean",
    "module.l1.weight",
    "module.bl0.weight",
    "module.al0.weight",
    "module.conv1x1_input_emo_2.weight",
    "module.emo_net_2.0.conv1.weight",
    "module.emo_net_2.6.bn3.running_var",
    "module.emo_fc_2.0.weight",
    "module.emo_fc_2.1.running_mean",
    "module.emo_fc_2.3.weight",
]


@pytest.fixture(scope="module")
def emonet_file(tmp_path_factory):
    """A random EmoNet-8 checkpoint in the published format: `module.` keys, no num_batches_tracked."""
    torch.manual_seed(0)
    net = EmoNet(n_expression=8)
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.endswith("running_var"):
            v = torch.rand_like(v) + 0.5
        elif k.endswith("running_mean"):
            v = torch.randn_like(v) * 0.1
        state["module." + k] = v
    path = tmp_path_factory.mktemp("emonet") / "emonet_8.pth"
    torch.save(state, path)
    return path, state


def test_emonet_state_dict_has_published_key_names(emonet_file):
    _, state = emonet_file
    missing = [k for k in PUBLISHED_KEYS if k not in state]
    assert not missing
    assert state["module.emo_fc_2.3.weight"].shape == (10, 128)
    assert state["module.l1.weight"].shape == (68, 256, 1, 1)
    assert state["module.conv1x1_input_emo_2.weight"].shape == (256, 768, 1, 1)


@pytest.mark.slow  # a full-size EmoNet forward pass on CPU (~10 s)
def test_emonet_loads_published_format_and_runs(emonet_file, astronaut):
    path, state = emonet_file
    net = load_emonet(path)
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, state["module." + k]), k
    backend = get_backend("emonet", models_dir=path.parent)
    crop = np.asarray(astronaut[:256, 128:384])
    (est,) = backend.predict([crop])
    assert est.probs.shape == (8,) and est.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= est.valence <= 1.0 and -1.0 <= est.arousal <= 1.0
    assert est.emotion == int(np.argmax(est.probs))
    with torch.inference_mode():
        raw = net(torch.from_numpy(crop.astype(np.float32) / 255).permute(2, 0, 1)[None])
    np.testing.assert_allclose(est.probs, torch.softmax(raw["expression"], 1)[0].numpy(), atol=1e-5)


def test_emonet_rejects_foreign_state_dict(tmp_path):
    torch.save({"module.conv1.weight": torch.zeros(64, 3, 7, 7), "module.extra.weight": torch.zeros(1)}, tmp_path / "emonet_8.pth")
    with pytest.raises(FacegenError, match="not an EmoNet"):
        load_emonet(tmp_path / "emonet_8.pth")


def test_hsemotion_class_mapping():
    assert HSEMOTION_CLASSES == ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    onehot = np.eye(8)
    for i, name in enumerate(HSEMOTION_CLASSES):
        assert EMOTION_NAMES[int(np.argmax(to_facegen_order(onehot[i])))] == name


def test_hsemotion_tiny_onnx(models_dir, astronaut):
    backend = get_backend("hsemotion", models_dir=models_dir)
    crops = [astronaut[:200, 150:350], astronaut[:224, 100:324]]
    ests = backend.predict(crops)
    assert len(ests) == 2
    raw = backend.model.run(backend.preprocess(crops))
    assert raw.shape == (2, 10)
    for est, row in zip(ests, raw):
        assert est.probs.sum() == pytest.approx(1.0, abs=1e-5)
        logits = row[:8]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(est.probs, to_facegen_order(expected), atol=1e-5)
        assert est.valence == pytest.approx(np.clip(row[8], -1, 1), abs=1e-6)
        assert est.arousal == pytest.approx(np.clip(row[9], -1, 1), abs=1e-6)


def test_none_emotion_backend():
    (est,) = get_backend("none", kind="emotion").predict([np.zeros((10, 10, 3), np.uint8)])
    assert est.emotion == -1 and np.isnan(est.valence) and np.allclose(est.probs, 1 / 8)
