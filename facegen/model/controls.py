"""Landmark and emotion control modules, each owning its per-layer cross-attention K/V projections.

A control module turns its condition into tokens and holds one bias-free (key, value) projection pair
per UNet cross-attention layer (`kv[i]` serves `layer_names[i]`). Keeping the K/V here means one
`save_pretrained` folder (`landmark/`, `emotion/`) holds everything a branch adds, the UNet file stays
stock Arc2Face, and `module.parameters()` is exactly what the branch trains and costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from facegen.labels import EMOTION_VECTOR_DIM


class LayerKV(nn.Module):
    """Bias-free key/value projections from control tokens (width d) to one layer's attention width."""

    def __init__(self, token_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.to_k = nn.Linear(token_dim, attn_dim, bias=False)
        self.to_v = nn.Linear(token_dim, attn_dim, bias=False)


class _ControlKVMixin:
    """Shared K/V bookkeeping for the control modules."""

    kv: nn.ModuleList

    def _build_kv(self, token_dim: int, layer_names: Sequence[str], layer_dims: Sequence[int], zero_values: bool):
        if len(layer_names) != len(layer_dims):
            raise ValueError("layer_names and layer_dims must have the same length")
        self.kv = nn.ModuleList(LayerKV(token_dim, int(dim)) for dim in layer_dims)
        if zero_values:
            # A fresh branch then adds exactly nothing until trained (values get gradients at once).
            for pair in self.kv:
                nn.init.zeros_(pair.to_v.weight)

    def kv_for(self, layer_name: str) -> LayerKV:
        """The K/V pair serving one cross-attention layer (by its diffusers module name)."""
        return self.kv[list(self.config.layer_names).index(layer_name)]

    def encoder_parameters(self) -> int:
        """Parameters of the token encoder alone (without the per-layer K/V)."""
        kv = sum(p.numel() for p in self.kv.parameters())
        return sum(p.numel() for p in self.parameters()) - kv

    def kv_parameters(self) -> int:
        return sum(p.numel() for p in self.kv.parameters())


class LandmarkControlModule(ModelMixin, ConfigMixin, _ControlKVMixin):
    """CNN over a rendered landmark image (B, 3, S, S) in [0, 1] -> (B, token_grid**2, token_dim) tokens.

    ``spatial_prior_width`` (off by default, so published-layout modules load unchanged) adds, in every
    cross-attention layer, a Gaussian bias ``-d^2 / (2 w_l^2)`` to the landmark branch's attention logits,
    d = distance between the query's and the token's grid cell centres in token cells and w_l a learned
    per-layer width starting at ``spatial_prior_width``. The tokens come from an image grid, so this tells
    each query where its own part of the landmark image is: at high noise a UNet's queries carry almost
    no position, and a frozen small UNet otherwise learns pose control from the tokens very slowly.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        image_size: int = 256,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256, 256),
        token_grid: int = 8,
        token_dim: int = 320,
        layer_names: Sequence[str] = (),
        layer_dims: Sequence[int] = (),
        zero_init_values: bool = False,
        spatial_prior_width: float | None = None,
    ) -> None:
        super().__init__()
        if spatial_prior_width is not None and spatial_prior_width <= 0:
            raise ValueError("spatial_prior_width must be > 0 (or None for no spatial prior)")
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(_groups(width), width), nn.SiLU()]
            previous = width
        self.cnn = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(token_grid)
        self.proj = nn.Conv2d(previous, token_dim, 1)
        self.pos_embed = nn.Parameter(torch.randn(token_grid * token_grid, token_dim) * 0.02)
        self.norm = nn.LayerNorm(token_dim)
        self._build_kv(token_dim, layer_names, layer_dims, zero_init_values)
        if spatial_prior_width is not None:
            self.log_prior_width = nn.Parameter(torch.full((len(layer_names),), math.log(spatial_prior_width)))

    @property
    def num_tokens(self) -> int:
        return self.config.token_grid**2

    def attention_bias(self, layer_name: str, num_queries: int) -> torch.Tensor | None:
        """(num_queries, num_tokens) additive logit bias for one layer's landmark branch, or None.

        Queries are a square grid (the UNet's feature map, row-major, as diffusers flattens it)."""
        if self.config.spatial_prior_width is None:
            return None
        side = math.isqrt(num_queries)
        if side * side != num_queries:
            raise ValueError(f"spatial prior needs a square feature map; got {num_queries} positions")
        grid = self.config.token_grid
        device = self.log_prior_width.device
        # cell centres in token-cell units
        query_xy = _cell_centres(side, device) * (grid / side)
        token_xy = _cell_centres(grid, device)
        dist2 = torch.cdist(query_xy, token_xy).pow(2)
        width = self.log_prior_width[list(self.config.layer_names).index(layer_name)].exp()
        return -dist2 / (2 * width.float() ** 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float in [0, 1] -> (B, N, d) tokens."""
        x = self.cnn(images.to(self.proj.weight.dtype) * 2.0 - 1.0)
        x = self.proj(self.pool(x)).flatten(2).transpose(1, 2)
        return self.norm(x + self.pos_embed)


class EmotionControlModule(ModelMixin, ConfigMixin, _ControlKVMixin):
    """MLP over (valence, arousal, 8 class probabilities) (B, 10) -> (B, num_tokens, token_dim) tokens."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_dim: int = EMOTION_VECTOR_DIM,
        hidden_dim: int = 256,
        num_tokens: int = 4,
        token_dim: int = 192,
        layer_names: Sequence[str] = (),
        layer_dims: Sequence[int] = (),
        zero_init_values: bool = False,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_tokens * token_dim),
        )
        self.norm = nn.LayerNorm(token_dim)
        self._build_kv(token_dim, layer_names, layer_dims, zero_init_values)

    def forward(self, emotions: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, M, d_e) tokens."""
        x = self.mlp(emotions.to(self.mlp[0].weight.dtype))
        return self.norm(x.view(x.shape[0], self.config.num_tokens, self.config.token_dim))


def _cell_centres(side: int, device: torch.device) -> torch.Tensor:
    """(side*side, 2) centres (x, y) of a side x side grid of unit cells, row-major."""
    coords = torch.arange(side, device=device, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


def _groups(width: int) -> int:
    for groups in (32, 16, 8, 4, 2):
        if width % groups == 0:
            return groups
    return 1
