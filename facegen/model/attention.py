"""Switched decoupled cross-attention (FaceCrafter eq. 1) as diffusers attention processors.

Every UNet cross-attention layer (`attn2`) computes
    Attn_ID + a_LMK * Attn_LMK + a_EMO * Attn_EMO
before its output projection. Attn_ID is exactly the stock `AttnProcessor2_0` computation on the
identity context; the LMK/EMO branches reuse the layer's query and use the control modules' own
bias-free K/V. a_LMK and a_EMO are per-sample (B,) tensors, passed with the tokens through
`cross_attention_kwargs={"lmk_tokens", "emo_tokens", "lmk_scale", "emo_scale"}`. Rows whose scale is 0
are not computed at all, so they stay bit-identical to stock attention.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from facegen.errors import FacegenError

#: The keys this module reads from `cross_attention_kwargs`.
CONTROL_KWARGS = ("lmk_tokens", "emo_tokens", "lmk_scale", "emo_scale")


@dataclass(frozen=True)
class CrossAttentionLayer:
    """One UNet cross-attention layer: its module name and attention (output) width."""

    name: str
    attn_dim: int


def cross_attention_layers(unet: nn.Module) -> list[CrossAttentionLayer]:
    """The UNet's cross-attention layers (`...attn2`) in forward order, with their attention widths."""
    layers = []
    for key in unet.attn_processors:
        name = key.removesuffix(".processor")
        if name.endswith("attn2"):
            module = unet.get_submodule(name)
            layers.append(CrossAttentionLayer(name, int(module.to_q.out_features)))
    return layers


class FaceCrafterSelfAttnProcessor(AttnProcessor2_0):
    """Stock `AttnProcessor2_0` that quietly accepts (and ignores) the FaceCrafter kwargs."""

    def __call__(  # type: ignore[override]
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        lmk_tokens: torch.Tensor | None = None,
        emo_tokens: torch.Tensor | None = None,
        lmk_scale: torch.Tensor | None = None,
        emo_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class FaceCrafterAttnProcessor(nn.Module):
    """Cross-attention processor for one layer: ID attention plus per-sample-switched LMK/EMO branches.

    The K/V weights live in the control modules (`landmark.kv_for(name)`, `emotion.kv_for(name)`) and
    are referenced, not registered here, so the UNet's own state dict and parameters stay stock.
    """

    def __init__(self, layer_name: str, landmark: nn.Module | None, emotion: nn.Module | None) -> None:
        super().__init__()
        self.layer_name = layer_name
        # Plain dict: the control modules are not submodules of the UNet (see class docstring).
        self._controls = {"lmk": landmark, "emo": emotion}
        self.recorder: dict[str, torch.Tensor] | None = None

    # diffusers inspects `processor.__call__` for accepted kwargs, so __call__ is defined directly
    # (as diffusers' own nn.Module processors do) instead of forward.
    def __call__(  # type: ignore[override]
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        lmk_tokens: torch.Tensor | None = None,
        emo_tokens: torch.Tensor | None = None,
        lmk_scale: torch.Tensor | None = None,
        emo_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # --- identical to diffusers' AttnProcessor2_0 up to the output projection ---
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)

        # --- eq. 1: + a_LMK * Attn_LMK + a_EMO * Attn_EMO ---
        for branch, tokens, scale in (("lmk", lmk_tokens, lmk_scale), ("emo", emo_tokens, emo_scale)):
            hidden_states = self._add_branch(attn, hidden_states, query, branch, tokens, scale)
        if self.recorder is not None:
            self.recorder[self.layer_name] = hidden_states

        # --- back to stock: output projection, dropout, reshape, residual ---
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states

    def _add_branch(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        query: torch.Tensor,
        branch: str,
        tokens: torch.Tensor | None,
        scale: torch.Tensor | None,
    ) -> torch.Tensor:
        if tokens is None or scale is None:
            return hidden_states
        batch = hidden_states.shape[0]
        scale = torch.as_tensor(scale, device=hidden_states.device)
        if scale.ndim == 0:
            scale = scale.expand(batch)
        if scale.shape != (batch,) or tokens.shape[0] != batch:
            raise FacegenError(
                f"{branch}_scale must have shape ({batch},) and {branch}_tokens {batch} rows; "
                f"got {tuple(scale.shape)} and {tuple(tokens.shape)}",
                where="cross_attention_kwargs",
            )
        active = (scale != 0).nonzero().flatten()
        if active.numel() == 0:
            return hidden_states
        module = self._controls[branch]
        if module is None:
            raise FacegenError(f"{branch} tokens given but no {branch} control module is installed")
        kv = module.kv_for(self.layer_name)
        every_row = active.numel() == batch
        if not every_row:
            query, tokens = query[active], tokens[active]
        rows = query.shape[0]
        tokens = tokens.to(kv.to_k.weight.dtype)
        head_dim = query.shape[-1]
        key = kv.to_k(tokens).view(rows, -1, attn.heads, head_dim).transpose(1, 2)
        value = kv.to_v(tokens).view(rows, -1, attn.heads, head_dim).transpose(1, 2)
        bias = module.attention_bias(self.layer_name, query.shape[2]) if hasattr(module, "attention_bias") else None
        if bias is not None:
            bias = bias.to(query.dtype)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(rows, -1, attn.heads * head_dim).to(hidden_states.dtype)
        weight = scale[active].to(out.dtype).view(-1, 1, 1)
        if every_row:
            return hidden_states + weight * out
        return hidden_states.index_add(0, active, weight * out)


def install_facecrafter_attention(unet: nn.Module, landmark: nn.Module | None, emotion: nn.Module | None) -> None:
    """Give every cross-attention layer a `FaceCrafterAttnProcessor` (self-attention stays stock)."""
    layers = cross_attention_layers(unet)
    for module, part in ((landmark, "landmark"), (emotion, "emotion")):
        if module is None:
            continue
        expected = [(layer.name, layer.attn_dim) for layer in layers]
        got = list(zip(module.config.layer_names, module.config.layer_dims))
        if [(n, int(d)) for n, d in got] != expected:
            raise FacegenError(
                "the control module's K/V layers do not match the UNet's cross-attention layers "
                f"({len(got)} vs {len(expected)} layers); re-create the control module for this UNet",
                where=f"{part}/config.json",
            )
    cross = {layer.name for layer in layers}
    processors = {}
    for key in unet.attn_processors:
        name = key.removesuffix(".processor")
        processors[key] = (
            FaceCrafterAttnProcessor(name, landmark, emotion) if name in cross else FaceCrafterSelfAttnProcessor()
        )
    unet.set_attn_processor(processors)


def facecrafter_processors(unet: nn.Module) -> list[FaceCrafterAttnProcessor]:
    return [p for p in unet.attn_processors.values() if isinstance(p, FaceCrafterAttnProcessor)]


@contextmanager
def record_attention(unet: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collect each cross-attention layer's combined (eq. 1) output during forward passes.

    Yields a dict `{layer_name: Tensor(B, seq, C)}` that every forward inside the block overwrites;
    the tensors are part of the autograd graph (for the attention-disentanglement loss).
    """
    processors = facecrafter_processors(unet)
    if not processors:
        raise FacegenError("the UNet has no FaceCrafter attention processors; load it through facegen.model")
    record: dict[str, torch.Tensor] = {}
    for processor in processors:
        processor.recorder = record
    try:
        yield record
    finally:
        for processor in processors:
            processor.recorder = None
