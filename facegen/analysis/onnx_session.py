"""A small onnxruntime session wrapper shared by the ONNX backends (checks the input signature)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegen.errors import FacegenError


class OnnxModel:
    """One-input ONNX model on CPU; `run(batch)` returns the first output."""

    def __init__(self, path: Path, *, expect_chw: tuple[int, int, int], threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise FacegenError(f"cannot load ONNX model: {exc}", where=str(path)) from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expect_chw)):
            raise FacegenError(f"model input is {shape}, expected [N, {', '.join(map(str, expect_chw))}]", where=str(path))
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            outs = [self.session.run(None, {self.input_name: batch[i : i + 1]})[0] for i in range(batch.shape[0])]
            return np.concatenate(outs, axis=0)
        return self.session.run(None, {self.input_name: batch})[0]
