"""Emotion backend: EmoNet (Toisoul et al., Nature Machine Intelligence 2021), re-implemented.

A FAN face-alignment trunk (stem + 2 stacked hourglasses of depth 4 predicting 68 landmark heatmaps)
whose features, gated by the summed heatmaps, feed an emotion head: 1x1 conv, 4 x (block + 2x2 max-pool),
4x4 average pool, MLP -> 8 expression logits + valence + arousal. Input: 256x256 RGB face crop in
[0, 1]. Module names follow the published checkpoint, so `emonet_8.pth` (keys optionally prefixed
`module.` from DataParallel) loads with every weight accounted for. EmoNet's normalisation layers are
batch norms in eval mode; the published file may lack `num_batches_tracked` buffers (older torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegen.analysis.base import EmotionBackend, EmotionEstimate, softmax
from facegen.analysis.models import ModelFile
from facegen.errors import FacegenError

FEATURES = 256
NUM_HEATMAPS = 68


class ConvBlock(nn.Module):
    """FAN's multi-scale residual block: three pre-activated 3x3 convs of out/2, out/4, out/4 channels,
    concatenated, plus an (optionally projected) identity path."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        half, quarter = out_ch // 2, out_ch // 4
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(), nn.Conv2d(in_ch, out_ch, 1, bias=False))
            if in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], dim=1) + skip


class HourGlass(nn.Module):
    """Recursive hourglass; level L has blocks `b1_L` (skip), `b2_L` (down), `b3_L` (up), and the
    innermost level an extra `b2_plus_1`."""

    def __init__(self, depth: int = 4, features: int = FEATURES) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        skip = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return skip + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class EmoNet(nn.Module):
    """EmoNet with `num_modules` stacked hourglasses and an (n_expression + 2)-output head."""

    def __init__(self, n_expression: int = 8, num_modules: int = 2, n_blocks: int = 4) -> None:
        super().__init__()
        self.n_expression = n_expression
        self.num_modules = num_modules
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURES)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(4, FEATURES))
            self.add_module(f"top_m_{i}", ConvBlock(FEATURES, FEATURES))
            self.add_module(f"conv_last{i}", nn.Conv2d(FEATURES, FEATURES, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(FEATURES))
            self.add_module(f"l{i}", nn.Conv2d(FEATURES, NUM_HEATMAPS, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(FEATURES, FEATURES, 1))
                self.add_module(f"al{i}", nn.Conv2d(NUM_HEATMAPS, FEATURES, 1))
        self.conv1x1_input_emo_2 = nn.Conv2d(FEATURES * (num_modules + 1), FEATURES, 1)
        head: list[nn.Module] = []
        for _ in range(n_blocks):
            head += [ConvBlock(FEATURES, FEATURES), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*head)
        self.emo_fc_2 = nn.Sequential(
            nn.Linear(FEATURES, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, n_expression + 2)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, 256, 256) RGB in [0, 1] -> expression logits (B, 8), valence (B,), arousal (B,), heatmap."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.max_pool2d(self.conv2(x), 2, stride=2)))
        previous, features = x, []
        for i in range(self.num_modules):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heatmap = self._modules[f"l{i}"](ll)
            if i < self.num_modules - 1:
                ll = self._modules[f"bl{i}"](ll)
                previous = previous + ll + self._modules[f"al{i}"](heatmap)
            features.append(ll)
        # The summed landmark heatmaps act as a spatial attention over the hourglass features.
        gated = torch.cat(features, dim=1) * heatmap.sum(dim=1, keepdim=True)
        h = self.emo_net_2(self.conv1x1_input_emo_2(torch.cat([x, gated], dim=1)))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)  # = EmoNet's 4x4 average pool at 256x256 input
        out = self.emo_fc_2(h)
        return {"expression": out[:, :-2], "valence": out[:, -2], "arousal": out[:, -1], "heatmap": heatmap}


def load_emonet(path: str | Path, n_expression: int = 8) -> EmoNet:
    """EmoNet in eval mode from a published-format checkpoint (torch.load with weights_only=True)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FacegenError(f"cannot read EmoNet weights: {exc}", where=str(path)) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FacegenError("not a state dict", where=str(path))
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    net = EmoNet(n_expression=n_expression)
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise FacegenError(
            f"not an EmoNet-{n_expression} state dict: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})",
            where=str(path),
        )
    return net.eval()


class EmoNetBackend(EmotionBackend):
    """`emonet_8.pth`; outputs already in facegen's class order (EmoNet defines it)."""

    name = "emonet"
    crop_size: ClassVar[int] = 256

    def __init__(self, model_path: str | Path, threads: int | None = None) -> None:
        self.net = load_emonet(model_path)
        self.threads = threads

    @classmethod
    def model_files(cls) -> list[ModelFile]:
        return [ModelFile(cls.name, cls.kind, ("emonet_8.pth", "emonet/emonet_8.pth"), "EmoNet: 8 emotions + valence/arousal")]

    @classmethod
    def create(cls, models_dir: Path, **options: Any) -> "EmoNetBackend":
        path = options.pop("model_path", None) or cls.model_files()[0].require(models_dir)
        return cls(path, **options)

    def predict(self, crops: Sequence[np.ndarray]) -> list[EmotionEstimate]:
        if not crops:
            return []
        from facegen.analysis.align import resize_square

        x = np.stack([resize_square(c, self.crop_size) for c in crops]).astype(np.float32) / 255.0
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        probs = softmax(out["expression"].numpy()).astype(np.float32)
        # Trained targets lie in [-1, 1]; clip so labels stay in the valid range.
        val = np.clip(out["valence"].numpy(), -1.0, 1.0)
        aro = np.clip(out["arousal"].numpy(), -1.0, 1.0)
        return [EmotionEstimate(p, float(v), float(a), int(np.argmax(p))) for p, v, a in zip(probs, val, aro)]
