"""The fixed pixel-space autoencoder: latents are the image at half size (exact, no variance), decoding
is bilinear until a refiner is trained, the folder round-trips through diffusers' loaders, and the
pipeline generates with a UNet over pixel latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.errors import FacegenError
from facegen.model.resample import ResampleAutoencoder
from facegen.model.vae import build_autoencoder, fresh_autoencoder, vae_scale_factor, with_wider_decoder


def _images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g) * 2 - 1


def test_encode_is_area_downsampling_with_zero_variance():
    vae = ResampleAutoencoder(factor=2)
    x = _images()
    dist = vae.encode(x).latent_dist
    assert dist.mean.shape == (2, 3, 32, 32)
    assert torch.equal(dist.mean, F.avg_pool2d(x, 2))
    g = torch.Generator().manual_seed(1)
    assert torch.equal(dist.sample(generator=g), dist.mean)
    assert float(dist.std.abs().max()) == 0.0
    assert vae_scale_factor(vae) == 2


def test_an_untrained_refiner_decodes_exactly_the_bilinear_image():
    plain, refined = ResampleAutoencoder(factor=2), ResampleAutoencoder(factor=2, refiner_channels=16)
    z = F.avg_pool2d(_images(), 2)
    bilinear = F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=False)
    assert plain.decoder is None and refined.decoder is not None
    assert torch.equal(plain.decode(z).sample, bilinear)
    assert torch.allclose(refined.decode(z).sample, bilinear)
    # a refiner that learned something changes the output, on top of the same latents
    with torch.no_grad():
        list(refined.decoder.net)[-1].bias.fill_(0.1)
    assert not torch.allclose(refined.decode(z).sample, bilinear)


def test_folder_round_trip_and_config_dispatch(tmp_path):
    vae = build_autoencoder({"factor": 2, "sample_size": 64, "scaling_factor": 3.0, "refiner_channels": 8})
    assert isinstance(vae, ResampleAutoencoder)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.01)
    vae.save_pretrained(tmp_path / "vae")
    again = ResampleAutoencoder.from_pretrained(tmp_path / "vae")
    assert again.config.scaling_factor == 3.0 and again.config.factor == 2
    z = F.avg_pool2d(_images(), 2)
    assert torch.equal(again.decode(z).sample, vae.decode(z).sample)
    assert type(build_autoencoder({"block_out_channels": [32], "norm_num_groups": 16})).__name__ == "AutoencoderKL"


@pytest.mark.parametrize("factor", [0, 3])
def test_a_factor_that_does_not_divide_the_image_is_refused(factor):
    with pytest.raises(ValueError, match="factor"):
        ResampleAutoencoder(factor=factor, sample_size=64)


def test_kl_decoder_swaps_are_refused_with_a_one_line_error():
    vae = ResampleAutoencoder()
    for call, field in ((lambda: with_wider_decoder(vae, [32, 32], 1), "decoder"),
                        (lambda: fresh_autoencoder(vae, [32, 32], 1), "new_autoencoder")):
        with pytest.raises(FacegenError, match="ResampleAutoencoder") as err:
            call()
        assert field in str(err.value)


def test_pixel_space_synthface_model_generates_64px_images(tmp_path):
    """`synthface init-model --autoencoder resample2`: a UNet over 32x32x3 pixel latents, loaded through
    the diffusers pipeline, generates 64-px images with every control branch on."""
    from facegen.model.pipeline import FaceCrafterPipeline
    from facegen.synthface.model import init_synthface_model

    folder = init_synthface_model(tmp_path / "px", autoencoder="resample2")
    pipe = FaceCrafterPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.vae, ResampleAutoencoder)
    assert pipe.unet.config.in_channels == 3 and pipe.unet.config.sample_size == 32
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(2, 512, generator=g), dim=-1)
    lmk = torch.rand(2, 3, 64, 64, generator=g)
    emo = torch.rand(2, 10, generator=g)
    out = pipe(id_embeds=emb, landmark_images=lmk, emotions=emo, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="np")
    images = np.asarray(out.images)
    assert images.shape == (2, 64, 64, 3) and np.isfinite(images).all()
