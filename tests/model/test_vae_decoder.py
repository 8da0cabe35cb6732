"""A wider decoder behind an unchanged encoder: the latent space (and so the UNet trained on it) stays
valid, the folder round-trips as diffusers' AsymmetricAutoencoderKL, and the pipeline generates with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AsymmetricAutoencoderKL, AutoencoderKL

from facegen.errors import FacegenError
from facegen.model.loading import load_components, save_components
from facegen.model.vae import (
    decoder_channels,
    encoder_channels,
    fresh_autoencoder,
    vae_scale_factor,
    with_wider_decoder,
)


def _images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g) * 2 - 1


def test_wider_decoder_keeps_the_latents_and_the_scale(tiny_model_dir):
    vae = load_components(tiny_model_dir).vae
    wide = with_wider_decoder(vae, [64, 64, 128, 128], 2, seed=3)
    assert isinstance(wide, AsymmetricAutoencoderKL)
    assert encoder_channels(wide) == encoder_channels(vae)
    assert decoder_channels(wide) == [64, 64, 128, 128]
    assert vae_scale_factor(wide) == vae_scale_factor(vae) == 8
    assert wide.config.scaling_factor == vae.config.scaling_factor
    x = _images()
    with torch.no_grad():
        assert torch.equal(wide.encode(x).latent_dist.mean, vae.encode(x).latent_dist.mean)
        z = vae.encode(x).latent_dist.mean
        assert wide.decode(z).sample.shape == vae.decode(z).sample.shape == x.shape
    # the fresh decoder's initialisation is seeded
    again = with_wider_decoder(vae, [64, 64, 128, 128], 2, seed=3)
    other = with_wider_decoder(vae, [64, 64, 128, 128], 2, seed=4)
    w = "decoder.conv_out.weight"
    assert torch.equal(again.state_dict()[w], wide.state_dict()[w])
    assert not torch.equal(other.state_dict()[w], wide.state_dict()[w])
    # asking for the shape it already has is a no-op
    assert with_wider_decoder(wide, [64, 64, 128, 128], 2) is wide


@pytest.mark.parametrize(("channels", "message"), [([64, 128], "needs 4 widths"), ([48, 48, 64, 64], "multiple of")])
def test_wider_decoder_rejects_shapes_that_cannot_work(tiny_model_dir, channels, message):
    vae = load_components(tiny_model_dir).vae
    with pytest.raises(FacegenError, match=message) as err:
        with_wider_decoder(vae, channels, 1)
    assert "decoder.block_out_channels" in str(err.value)


def test_a_folder_with_a_wider_decoder_loads_and_generates(tiny_model_dir, tmp_path):
    components = load_components(tiny_model_dir)
    components.vae = with_wider_decoder(components.vae, [64, 64, 128, 128], 1)
    out = save_components(components, tmp_path / "wide")
    loaded = load_components(out)
    assert isinstance(loaded.vae, AsymmetricAutoencoderKL)
    for name, value in components.vae.state_dict().items():
        assert torch.equal(loaded.vae.state_dict()[name], value), name
    pipe = loaded.to_pipeline()
    emb = torch.nn.functional.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), dim=1)
    images = pipe(id_embeds=emb, num_inference_steps=2, height=64, width=64, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
    # and the original class still loads as before
    assert isinstance(load_components(tiny_model_dir).vae, AutoencoderKL)


def test_fresh_autoencoder_keeps_the_shapes_and_is_seeded(tiny_model_dir):
    vae = load_components(tiny_model_dir).vae
    new = fresh_autoencoder(vae, [64, 64, 128, 128], 1, seed=2)
    assert isinstance(new, AutoencoderKL) and encoder_channels(new) == decoder_channels(new) == [64, 64, 128, 128]
    x = _images()
    with torch.no_grad():
        assert new.encode(x).latent_dist.mean.shape == vae.encode(x).latent_dist.mean.shape
    same = fresh_autoencoder(vae, [64, 64, 128, 128], 1, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), same.state_dict().values()))
    with pytest.raises(FacegenError, match="needs 4 widths") as err:
        fresh_autoencoder(vae, [64, 64], 1)
    assert "new_autoencoder.block_out_channels" in str(err.value)
