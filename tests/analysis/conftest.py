"""Analysis fixtures: real shipped photos, a real MediaPipe mesh, and stand-ins for bring-your-own
weights built to the real formats (tiny ONNX models with the real signatures, an EmoNet state dict
with the published key names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tiny_onnx(path: Path, *, input_name: str, size: int, outputs: int, patch: int, seed: int) -> Path:
    """A conv (patch x patch, stride patch) + linear ONNX model: input (N, 3, size, size) -> (N, outputs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    ch = 4
    cells = ch * (size // patch) ** 2
    conv_w = rng.normal(0, 0.2, (ch, 3, patch, patch)).astype(np.float32)
    fc_w = rng.normal(0, 1 / np.sqrt(cells), (cells, outputs)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, (outputs,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w"], ["c"], kernel_shape=[patch, patch], strides=[patch, patch]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(fc_w, "fc_w"), numpy_helper.from_array(fc_b, "fc_b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def make_tiny_onnx():
    return tiny_onnx


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with a tiny ArcFace (`arcface.onnx`, input `input.1` 1x3x112x112 -> 512) and a tiny
    HSEmotion (`enet_b0_8_va_mtl.onnx`, 3x224x224 -> 10)."""
    root = tmp_path_factory.mktemp("models")
    tiny_onnx(root / "arcface.onnx", input_name="input.1", size=112, outputs=512, patch=8, seed=1)
    tiny_onnx(root / "enet_b0_8_va_mtl.onnx", input_name="input", size=224, outputs=10, patch=16, seed=2)
    return root


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """Matplotlib's sample photo of Grace Hopper: a second, different real person."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="session")
def mesh():
    from facegen.analysis import get_backend

    backend = get_backend("mediapipe")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def group_photo() -> np.ndarray:
    """insightface's t1.jpg (6 people), read from its wheel, which `make` downloads (not installs)."""
    import subprocess
    import sys
    import zipfile

    from PIL import Image

    folder = Path(sys.prefix) / "test-data"
    wheels = sorted(folder.glob("insightface-*.whl"))
    if not wheels:  # outside `make`: fetch the same wheel from PyPI once
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "insightface==2.1", "-d", str(folder)],
            check=True,
        )
        wheels = sorted(folder.glob("insightface-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        data = wheel.read("insightface/data/images/t1.jpg")
    import io

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
