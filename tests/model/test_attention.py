"""Switched decoupled cross-attention (eq. 1) against stock diffusers attention."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from facegen.errors import FacegenError
from facegen.model.attention import (
    FaceCrafterAttnProcessor,
    cross_attention_layers,
    install_facecrafter_attention,
    record_attention,
)


def _unet_inputs(pipe, conditions, batch=3, seed=0):
    cond = conditions(batch, pipe.landmark_image_size, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    latents = torch.randn(batch, 4, 8, 8, generator=g)
    with torch.no_grad():
        context = pipe.identity_encoder(cond["id_embeds"])
        lmk = pipe.landmark(cond["landmark_images"])
        emo = pipe.emotion(cond["emotions"])
    return latents, context, lmk, emo


def _forward(unet, latents, context, lmk, emo, lmk_scale, emo_scale, t=500):
    kwargs = {"lmk_tokens": lmk, "emo_tokens": emo, "lmk_scale": lmk_scale, "emo_scale": emo_scale}
    with torch.no_grad():
        return unet(latents, t, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample


def test_only_cross_attention_is_switched(tiny_pipe):
    processors = tiny_pipe.unet.attn_processors
    cross = {f"{layer.name}.processor" for layer in cross_attention_layers(tiny_pipe.unet)}
    assert len(cross) == 4
    for key, processor in processors.items():
        assert isinstance(processor, FaceCrafterAttnProcessor) == (key in cross)
        assert isinstance(processor, FaceCrafterAttnProcessor) == key.endswith("attn2.processor")
    # the K/V live in the control modules, not in the UNet's weights
    assert not any("kv" in name or "lmk" in name for name in tiny_pipe.unet.state_dict())


def test_zero_scales_equal_stock_attention_exactly(tiny_pipe, conditions):
    unet = tiny_pipe.unet
    latents, context, lmk, emo = _unet_inputs(tiny_pipe, conditions)
    zeros = torch.zeros(3)
    ours = _forward(unet, latents, context, lmk, emo, zeros, zeros)
    unet.set_attn_processor(AttnProcessor2_0())
    try:
        with torch.no_grad():
            stock = unet(latents, 500, encoder_hidden_states=context).sample
    finally:
        install_facecrafter_attention(unet, tiny_pipe.landmark, tiny_pipe.emotion)
    assert (ours - stock).abs().max().item() == 0.0

    # each branch switched on changes every sample's output
    ones = torch.ones(3)
    with_lmk = _forward(unet, latents, context, lmk, emo, ones, zeros)
    with_emo = _forward(unet, latents, context, lmk, emo, zeros, ones)
    for changed in (with_lmk, with_emo):
        assert ((changed - stock).abs().flatten(1).max(dim=1).values > 1e-4).all()
    assert (with_lmk - with_emo).abs().max() > 1e-4


def test_per_sample_scales_match_each_sample_alone(tiny_pipe, conditions):
    unet = tiny_pipe.unet
    latents, context, lmk, emo = _unet_inputs(tiny_pipe, conditions, batch=4, seed=1)
    lmk_scale = torch.tensor([0.0, 1.0, 0.0, 1.0])
    emo_scale = torch.tensor([0.0, 0.0, 1.0, 1.0])
    mixed = _forward(unet, latents, context, lmk, emo, lmk_scale, emo_scale)
    for i in range(4):
        s = slice(i, i + 1)
        alone = _forward(unet, latents[s], context[s], lmk[s], emo[s], lmk_scale[s], emo_scale[s])
        assert torch.allclose(mixed[s], alone, atol=1e-5, rtol=0), i
    # and the four condition sets really differ from each other on identical inputs
    same_inputs = _forward(
        unet, latents[:1].expand(4, -1, -1, -1), context[:1].expand(4, -1, -1), lmk[:1].expand(4, -1, -1),
        emo[:1].expand(4, -1, -1), lmk_scale, emo_scale,
    )
    diffs = [(same_inputs[0] - same_inputs[i]).abs().max().item() for i in (1, 2, 3)]
    assert min(diffs) > 1e-4


def test_fractional_scale_is_linear_in_the_branch(tiny_pipe, conditions):
    """a_LMK scales Attn_LMK linearly before the output projection: f(0.5) = (f(0) + f(1)) / 2 per layer."""
    unet = tiny_pipe.unet
    latents, context, lmk, emo = _unet_inputs(tiny_pipe, conditions, batch=2, seed=2)
    outs = {}
    for scale in (0.0, 0.5, 1.0):
        with record_attention(unet) as record:
            _forward(unet, latents, context, lmk, emo, torch.full((2,), scale), torch.zeros(2))
        outs[scale] = dict(record)
    first = next(iter(outs[0.0]))  # the first cross-attention layer sees identical inputs for all scales
    mid = (outs[0.0][first] + outs[1.0][first]) / 2
    assert torch.allclose(outs[0.5][first], mid, atol=1e-5)


def test_record_attention_collects_every_layer_with_gradients(tiny_pipe, conditions):
    unet, landmark = tiny_pipe.unet, tiny_pipe.landmark
    latents, context, _, emo = _unet_inputs(tiny_pipe, conditions, batch=2, seed=3)
    images = conditions(2, tiny_pipe.landmark_image_size, seed=3)["landmark_images"]
    landmark.requires_grad_(True)
    try:
        with record_attention(unet) as record:
            tokens = landmark(images)
            kwargs = {"lmk_tokens": tokens, "emo_tokens": emo, "lmk_scale": torch.ones(2), "emo_scale": torch.zeros(2)}
            unet(latents, 500, encoder_hidden_states=context, cross_attention_kwargs=kwargs)
        layers = [layer.name for layer in cross_attention_layers(unet)]
        assert sorted(record) == sorted(layers)
        for name, tensor in record.items():
            module = unet.get_submodule(name)
            assert tensor.shape[0] == 2 and tensor.shape[2] == module.to_q.out_features
        sum(t.square().mean() for t in record.values()).backward()
        kv = landmark.kv_for(layers[0])
        assert kv.to_k.weight.grad is not None and kv.to_k.weight.grad.abs().sum() > 0
        assert landmark.proj.weight.grad is not None and landmark.proj.weight.grad.abs().sum() > 0
    finally:
        landmark.requires_grad_(False)
        landmark.zero_grad(set_to_none=True)
    # outside the block nothing is recorded any more
    assert all(p.recorder is None for p in unet.attn_processors.values() if isinstance(p, FaceCrafterAttnProcessor))


def test_bad_scale_shape_is_a_user_error(tiny_pipe, conditions):
    latents, context, lmk, emo = _unet_inputs(tiny_pipe, conditions, batch=2)
    with pytest.raises(FacegenError, match="lmk_scale"):
        _forward(tiny_pipe.unet, latents, context, lmk, emo, torch.ones(3), torch.zeros(2))


def _reference_eq1(attn, x, context, branches):
    """Eq. 1 written out: softmax(Q K^T / sqrt(d)) V per head for ID + sum of a * the same with each branch's
    own K/V, then the layer's output projection. float64, no diffusers code path."""
    heads = attn.heads
    lin = lambda t, layer: t.double() @ layer.weight.double().T + (0 if layer.bias is None else layer.bias.double())  # noqa: E731

    def attention(q, k, v):
        b, lq, inner = q.shape
        d = inner // heads
        q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
        return (weights @ v).transpose(1, 2).reshape(b, lq, inner)

    q = lin(x, attn.to_q)
    out = attention(q, lin(context, attn.to_k), lin(context, attn.to_v))
    for tokens, scale, kv in branches:
        out = out + scale.double()[:, None, None] * attention(q, lin(tokens, kv.to_k), lin(tokens, kv.to_v))
    return lin(out, attn.to_out[0])


def _layer_inputs(tiny_pipe, conditions, batch, seed):
    latents, context, lmk, emo = _unet_inputs(tiny_pipe, conditions, batch=batch, seed=seed)
    layer = cross_attention_layers(tiny_pipe.unet)[0]
    attn = tiny_pipe.unet.get_submodule(layer.name)
    x = torch.randn(batch, 16, attn.to_q.in_features, generator=torch.Generator().manual_seed(seed))
    return layer.name, attn, x, context, lmk, emo


def test_eq1_matches_a_handwritten_softmax_reference(tiny_pipe, conditions):
    name, attn, x, context, lmk, emo = _layer_inputs(tiny_pipe, conditions, batch=4, seed=4)
    processor = FaceCrafterAttnProcessor(name, tiny_pipe.landmark, tiny_pipe.emotion)
    a_lmk, a_emo = torch.tensor([0.0, 1.0, 0.0, 0.5]), torch.tensor([0.0, 0.0, 1.0, 1.0])
    with torch.no_grad():
        ours = processor(attn, x, context, lmk_tokens=lmk, emo_tokens=emo, lmk_scale=a_lmk, emo_scale=a_emo)
        ref = _reference_eq1(attn, x, context, [
            (lmk, a_lmk, tiny_pipe.landmark.kv_for(name)), (emo, a_emo, tiny_pipe.emotion.kv_for(name)),
        ])
    assert torch.allclose(ours.double(), ref, atol=2e-5, rtol=0)
    # the reference is not trivially satisfied: dropping a branch moves the switched rows
    ref_id_only = _reference_eq1(attn, x, context, [])
    assert (ref - ref_id_only)[1:].abs().flatten(1).max(1).values.min() > 1e-4


def test_zero_rows_of_a_mixed_batch_are_bit_identical_to_stock_attention(tiny_pipe, conditions):
    """a = 0 rows inside a batch whose other rows switch branches on: exactly stock `AttnProcessor2_0` on
    the same batch, at one layer and through the whole UNet."""
    name, attn, x, context, lmk, emo = _layer_inputs(tiny_pipe, conditions, batch=4, seed=5)
    a_lmk, a_emo = torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])
    zero = (a_lmk == 0) & (a_emo == 0)
    processor = FaceCrafterAttnProcessor(name, tiny_pipe.landmark, tiny_pipe.emotion)
    with torch.no_grad():
        ours = processor(attn, x, context, lmk_tokens=lmk, emo_tokens=emo, lmk_scale=a_lmk, emo_scale=a_emo)
        stock = AttnProcessor2_0()(attn, x, context)
    assert torch.equal(ours[zero], stock[zero]) and not torch.equal(ours[~zero], stock[~zero])

    unet = tiny_pipe.unet
    latents, context, lmk, emo = _unet_inputs(tiny_pipe, conditions, batch=4, seed=5)
    mixed = _forward(unet, latents, context, lmk, emo, a_lmk, a_emo)
    unet.set_attn_processor(AttnProcessor2_0())
    try:
        with torch.no_grad():
            stock = unet(latents, 500, encoder_hidden_states=context).sample
    finally:
        install_facecrafter_attention(unet, tiny_pipe.landmark, tiny_pipe.emotion)
    assert torch.equal(mixed[zero], stock[zero])


def test_landmark_spatial_prior_points_each_query_at_its_own_cell():
    """With `spatial_prior_width`, the landmark branch's logits get -d^2/(2 w^2) (d in token cells); with a
    very narrow width each query of a 4x4 feature map reads exactly the value of the 2x2 token under it."""
    from diffusers.models.attention_processor import Attention

    from facegen.model.controls import LandmarkControlModule

    module = LandmarkControlModule(
        image_size=16, channels=(4,), token_grid=2, token_dim=8, layer_names=("x.attn2",), layer_dims=(8,),
        spatial_prior_width=1.0,
    )
    bias = module.attention_bias("x.attn2", 16)
    assert bias.shape == (16, 4)
    # query (row 0, col 3) sits over token (0, 1); query (3, 0) over token (1, 0)
    assert int(bias[3].argmax()) == 1 and int(bias[12].argmax()) == 2
    # query (0, 0) has its centre at (0.25, 0.25) token cells; the tokens' at (0.5|1.5, 0.5|1.5)
    assert torch.allclose(bias[0], -torch.tensor([0.125, 1.625, 1.625, 3.125]) / 2)
    with pytest.raises(ValueError, match="square"):
        module.attention_bias("x.attn2", 12)

    with torch.no_grad():
        module.log_prior_width.fill_(float(torch.log(torch.tensor(0.02))))
    attn = Attention(query_dim=8, cross_attention_dim=16, heads=1, dim_head=8)
    processor = FaceCrafterAttnProcessor("x.attn2", module, None)
    g = torch.Generator().manual_seed(0)
    hidden, context, tokens = torch.randn(1, 16, 8, generator=g), torch.randn(1, 3, 16, generator=g), torch.randn(1, 4, 8, generator=g)
    outputs = []
    for scale in (0.0, 1.0):
        processor.recorder = {}
        with torch.no_grad():
            processor(attn, hidden, context, lmk_tokens=tokens, lmk_scale=torch.tensor([scale]))
        outputs.append(processor.recorder["x.attn2"])
    branch = outputs[1] - outputs[0]
    values = module.kv[0].to_v(tokens)[0]  # (4, 8)
    nearest = [(r // 2) * 2 + (c // 2) for r in range(4) for c in range(4)]
    assert torch.allclose(branch[0], values[nearest], atol=1e-5)
    # without the prior the same query mixes tokens by content alone
    plain = LandmarkControlModule(
        image_size=16, channels=(4,), token_grid=2, token_dim=8, layer_names=("x.attn2",), layer_dims=(8,))
    assert plain.attention_bias("x.attn2", 16) is None


def test_landmark_spatial_prior_survives_save_and_load(tmp_path):
    from facegen.model.controls import LandmarkControlModule

    module = LandmarkControlModule(
        image_size=16, channels=(4,), token_grid=2, token_dim=8, layer_names=("a.attn2", "b.attn2"),
        layer_dims=(8, 16), spatial_prior_width=1.5,
    )
    with torch.no_grad():
        module.log_prior_width[1] = 0.1  # as if trained
    module.save_pretrained(tmp_path / "landmark")
    loaded = LandmarkControlModule.from_pretrained(str(tmp_path / "landmark"), use_safetensors=True)
    assert loaded.config.spatial_prior_width == 1.5
    for name in ("a.attn2", "b.attn2"):
        assert torch.equal(loaded.attention_bias(name, 64), module.attention_bias(name, 64))
    assert not torch.equal(loaded.attention_bias("a.attn2", 64), loaded.attention_bias("b.attn2", 64))
    with pytest.raises(ValueError, match="spatial_prior_width"):
        LandmarkControlModule(image_size=16, channels=(4,), token_grid=2, token_dim=8, spatial_prior_width=0.0)
