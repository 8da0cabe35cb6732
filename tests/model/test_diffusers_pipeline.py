"""FaceCrafterPipeline as a real diffusers.DiffusionPipeline: loading, schedulers, call arguments,
save/load, old-folder conversion, and the same pixels as the pipeline before it (real diffusers, tiny model)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.models.attention_processor import AttnProcessor2_0

from facegen.cli.main import main
from facegen.errors import FacegenError
from facegen.model.attention import FaceCrafterAttnProcessor
from facegen.model.folder import model_hash, read_model_info
from facegen.model.guidance import BranchPlan, GuidanceWeights, combine_guidance
from facegen.model.loading import convert_model_folder, load_components, save_components
from facegen.model.pipeline import FaceCrafterPipeline, to_uint8
from facegen.model.presets import SD15_SCHEDULER_CONFIG
from facegen.model.schedulers import SCHEDULER_TABLE, scheduler_from_name

REPO = Path(__file__).resolve().parents[2]
USE_LMK = torch.tensor([True, False, True, False])
USE_EMO = torch.tensor([False, False, True, True])
SEEDS = [10, 11, 12, 13]


def fresh(model_dir: Path) -> FaceCrafterPipeline:
    pipe = FaceCrafterPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def old_sampler(pipe: FaceCrafterPipeline, cond: dict, name: str, steps: int = 5) -> np.ndarray:
    """The sampling loop exactly as the pre-diffusers pipeline ran it (fresh scheduler from the trained
    PNDM config per call, per-seed CPU noise, DDPM step noise from the same generators, decode to uint8)."""
    config = {k: v for k, v in SD15_SCHEDULER_CONFIG.items() if k != "_class_name"}
    sched = {
        "dpmpp": lambda: DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2),
        "ddim": lambda: DDIMScheduler.from_config(config),
        "ddpm": lambda: DDPMScheduler.from_config(config),
    }[name]()
    sched.set_timesteps(steps)
    generators = [torch.Generator("cpu").manual_seed(s) for s in SEEDS]
    latents = torch.cat([torch.randn((1, 4, 8, 8), generator=g) for g in generators]) * sched.init_noise_sigma
    with torch.no_grad():
        conditions = pipe.encode_conditions(cond["id_embeds"], cond["landmark_images"], cond["emotions"], USE_LMK, USE_EMO)
        plan = BranchPlan.for_samples(USE_LMK.tolist(), USE_EMO.tolist())
        for t in sched.timesteps:
            rows = pipe.unet_rows(sched.scale_model_input(latents, t), t, plan, conditions).float()
            eps = combine_guidance(rows, plan, 4, GuidanceWeights())
            latents = sched.step(eps, t, latents, **({"generator": generators} if name == "ddpm" else {})).prev_sample
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return ((images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def same_weights_and_index(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> bool:
    """Byte-identical weights and scheduler config, the same model_index.json (minus `ignore`), the same marker."""
    files = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.safetensors")) and len(files) == 5
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    index_a, index_b = (json.loads((d / "model_index.json").read_text()) for d in (a, b))
    for key in ignore:
        index_a.pop(key), index_b.pop(key)
    assert index_a == index_b
    for name in ("facegen.json", "scheduler/scheduler_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return True


@pytest.mark.parametrize("name", ["dpmpp", "ddim", "ddpm"])
def test_same_pixels_as_the_pipeline_before_diffusers(tiny_pipe, legacy_model_dir: Path, conditions, name):
    cond = conditions(4, 64, seed=9)
    before = np.load(Path(__file__).parent / "data" / "pre_diffusers_outputs.npz")[name]
    legacy = fresh(legacy_model_dir)
    for pipe in (tiny_pipe, legacy):
        out = pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=SEEDS, num_inference_steps=5, scheduler=name,
                   output_type="np")
        images = to_uint8(out.images)
        assert np.array_equal(images, old_sampler(pipe, cond, name))  # same loop, bit for bit
        diff = np.abs(images.astype(int) - before.astype(int))  # stored from the old code (other CPUs may round 1 apart)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (name, diff.max(), (diff > 0).mean())
    # default scheduler of the folder is the one `dpmpp` names: no name gives the same pixels
    if name == "dpmpp":
        default = tiny_pipe(**cond, use_lmk=USE_LMK, use_emo=USE_EMO, seeds=SEEDS, num_inference_steps=5, output_type="np")
        assert np.array_equal(to_uint8(default.images), old_sampler(tiny_pipe, cond, name))


def test_diffusion_pipeline_from_pretrained_gives_working_controls(tiny_model_dir: Path, conditions):
    pipe = DiffusionPipeline.from_pretrained(tiny_model_dir)
    assert type(pipe) is FaceCrafterPipeline
    assert set(pipe.components) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "landmark", "emotion"}
    assert pipe.resolution == 64 and pipe.landmark_image_size == 64 and pipe.default_guidance == GuidanceWeights()
    processors = [p for k, p in pipe.unet.attn_processors.items() if "attn2" in k]
    assert processors and all(isinstance(p, FaceCrafterAttnProcessor) for p in processors)
    assert all(p._controls["lmk"] is pipe.landmark and p._controls["emo"] is pipe.emotion for p in processors)
    pipe.set_progress_bar_config(disable=True)
    cond = conditions(2, 64, seed=4)
    kwargs = dict(seeds=[1, 2], num_inference_steps=3, output_type="np")
    on = pipe(**cond, use_lmk=torch.tensor([True, True]), use_emo=torch.tensor([True, True]), **kwargs).images
    off = pipe(**cond, use_lmk=torch.tensor([False, False]), use_emo=torch.tensor([False, False]), **kwargs).images
    lmk_only = pipe(**cond, use_lmk=torch.tensor([True, True]), use_emo=torch.tensor([False, False]), **kwargs).images
    assert np.abs(on - off).max() > 0.05 and np.abs(on - lmk_only).max() > 0.01


def test_readme_diffusers_lines_run_in_a_fresh_interpreter(tiny_model_dir: Path):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- diffusers-quickstart -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README lost its diffusers quick start block"
    code = "\n".join(
        [
            "import torch",
            f"MODEL_DIR = {str(tiny_model_dir)!r}",
            "g = torch.Generator().manual_seed(0)",
            "id_embeds = torch.nn.functional.normalize(torch.randn(2, 512, generator=g), dim=-1)",
            "landmark_images = torch.rand(2, 3, 64, 64, generator=g)",
            "emotions = torch.rand(2, 10, generator=g)",
            block.group(1),
            "assert type(pipe).__name__ == 'FaceCrafterPipeline', type(pipe)",
            "assert type(pipe.scheduler).__name__ == 'EulerDiscreteScheduler'",
            "assert len(images) == 2 and images[0].size == (64, 64)",
            "print('ok')",
        ]
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.parametrize("scheduler_cls", [EulerDiscreteScheduler, UniPCMultistepScheduler])
def test_any_diffusers_scheduler_swaps_in(tiny_model_dir: Path, tmp_path: Path, conditions, scheduler_cls):
    pipe = fresh(tiny_model_dir)
    cond = conditions(3, 64, seed=2)
    flags = dict(use_lmk=torch.tensor([True, False, True]), use_emo=torch.tensor([False, True, True]))
    default = pipe(**cond, **flags, seeds=[1, 2, 3], num_inference_steps=4, output_type="np").images
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    out = pipe(**cond, **flags, seeds=[1, 2, 3], num_inference_steps=4, output_type="np")
    assert out.settings[0]["scheduler"] == scheduler_cls.__name__
    assert np.isfinite(out.images).all() and np.abs(out.images - default).max() > 1e-3
    # per-sample generators keep every image independent of its batch mates (Euler draws step noise too)
    alone = pipe(**{k: v[1:2] for k, v in cond.items()}, use_lmk=torch.tensor([False]), use_emo=torch.tensor([True]),
                 seeds=[2], num_inference_steps=4, output_type="np")
    assert np.abs(to_uint8(alone.images[0]).astype(int) - to_uint8(out.images[1]).astype(int)).max() <= 1
    # the swap is saved and comes back
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", scheduler_cls.__name__]
    reloaded = DiffusionPipeline.from_pretrained(tmp_path / "saved")
    reloaded.set_progress_bar_config(disable=True)
    assert type(reloaded.scheduler) is scheduler_cls
    again = reloaded(**cond, **flags, seeds=[1, 2, 3], num_inference_steps=4, output_type="np")
    assert np.array_equal(again.images, out.images)


def test_scheduler_names_go_through_one_table(tiny_pipe):
    assert list(SCHEDULER_TABLE) == ["dpmpp", "ddim", "ddpm", "dpmpp-sde"]
    made = scheduler_from_name("ddim", tiny_pipe.scheduler.config)
    # the reloaded DPM++ config hands DDIM the trained schedule, not DPM++'s own defaults
    assert type(made) is DDIMScheduler and made.config.timestep_spacing == "leading" and made.config.steps_offset == 1
    assert made.config.clip_sample is False and made.config.set_alpha_to_one is False
    assert scheduler_from_name("ddpm", tiny_pipe.scheduler.config).config.variance_type == "fixed_small"
    with pytest.raises(FacegenError, match="unknown scheduler 'euler'; choose one of dpmpp, ddim, ddpm, dpmpp-sde"):
        scheduler_from_name("euler", tiny_pipe.scheduler.config)


def test_save_pretrained_round_trip(tiny_pipe, tiny_model_dir: Path, tmp_path: Path, conditions):
    tiny_pipe.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "model_index.json").is_file() and (tmp_path / "copy" / "facegen.json").is_file()
    assert same_weights_and_index(tmp_path / "copy", tiny_model_dir)
    reloaded = FaceCrafterPipeline.from_pretrained(tmp_path / "copy")
    reloaded.set_progress_bar_config(disable=True)
    assert reloaded.config.provenance == tiny_pipe.config.provenance and reloaded.model_id == "tiny"
    cond = conditions(2, 64, seed=3)
    kwargs = dict(use_lmk=torch.tensor([True, False]), use_emo=torch.tensor([True, True]), seeds=[5, 6],
                  num_inference_steps=3, output_type="np")
    assert np.array_equal(tiny_pipe(**cond, **kwargs).images, reloaded(**cond, **kwargs).images)


def test_call_arguments(tiny_pipe, conditions):
    pipe, cond = tiny_pipe, conditions(2, 64, seed=8)
    flags = dict(use_lmk=torch.tensor([True, False]), use_emo=torch.tensor([False, True]), num_inference_steps=3)
    generators = [torch.Generator().manual_seed(s) for s in (7, 8)]
    by_generators = pipe(**cond, **flags, generator=generators, output_type="np")
    by_seeds = pipe(**cond, **flags, seeds=[7, 8], output_type="np")
    assert np.array_equal(by_generators.images, by_seeds.images)
    noise = torch.cat([torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (7, 8)])
    by_latents = pipe(**cond, **flags, latents=noise, output_type="np")
    assert np.array_equal(by_latents.images, by_seeds.images)
    single = pipe(**cond, **flags, generator=torch.Generator().manual_seed(7), output_type="np")
    assert np.abs(single.images - by_seeds.images).max() > 1e-3  # one generator: one (2, ...) draw, diffusers-style

    pil = pipe(**cond, **flags, seeds=[7, 8])  # default: PIL, exactly the rounded np output
    assert np.array_equal(np.stack([np.asarray(im) for im in pil.images]), to_uint8(by_seeds.images))
    pt = pipe(**cond, **flags, seeds=[7, 8], output_type="pt").images
    assert pt.shape == (2, 3, 64, 64) and torch.allclose(pt.permute(0, 2, 3, 1), torch.from_numpy(by_seeds.images))
    latent = pipe(**cond, **flags, seeds=[7, 8], output_type="latent").images
    assert latent.shape == (2, 4, 8, 8)
    images, settings = pipe(**cond, **flags, seeds=[7, 8], output_type="np", return_dict=False)
    assert np.array_equal(images, by_seeds.images) and settings[1]["seed"] == 8 and settings[1]["use_emo"]

    seen = []

    def zero_latents(p, i, t, kwargs):
        seen.append((i, int(t), tuple(kwargs)))
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == 2 else {}

    cb = pipe(**cond, **flags, seeds=[7, 8], output_type="latent", callback_on_step_end=zero_latents,
              callback_on_step_end_tensor_inputs=["latents"])
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][2] == ("latents",)
    assert torch.equal(cb.images, torch.zeros_like(cb.images))

    for bad, match in (
        (dict(output_type="jpeg"), "output_type"),
        (dict(callback_on_step_end=zero_latents, callback_on_step_end_tensor_inputs=["eps"]), "callback"),
        (dict(generator=[torch.Generator()]), "one generator per sample"),
        (dict(seeds=[1, 2], generator=generators), "either seeds or generator"),
        (dict(latents=torch.zeros(2, 4, 4, 4)), "latents"),
    ):
        with pytest.raises(FacegenError, match=match):
            pipe(**cond, **flags, **bad)


def test_progress_bar_follows_its_config(tiny_model_dir: Path, conditions, capsys):
    pipe = FaceCrafterPipeline.from_pretrained(tiny_model_dir)
    cond = conditions(1, 64)
    capsys.readouterr()
    pipe(cond["id_embeds"], seeds=[1], num_inference_steps=3)
    assert "3/3" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(cond["id_embeds"], seeds=[1], num_inference_steps=3)
    assert "3/3" not in capsys.readouterr().err
    pipe(cond["id_embeds"], seeds=[1], num_inference_steps=3, progress=True)  # per-call override
    assert "3/3" in capsys.readouterr().err
    pipe(cond["id_embeds"], seeds=[1], num_inference_steps=3)
    assert "3/3" not in capsys.readouterr().err


def test_model_cpu_offload_runs_and_matches(tiny_model_dir: Path, conditions):
    pipe = fresh(tiny_model_dir)
    cond = conditions(2, 64, seed=1)
    kwargs = dict(use_lmk=torch.tensor([True, True]), use_emo=torch.tensor([True, False]), seeds=[3, 4],
                  num_inference_steps=2, output_type="np")
    expected = pipe(**cond, **kwargs).images
    assert pipe.model_cpu_offload_seq == "text_encoder->unet->vae"
    pipe.enable_model_cpu_offload(device="cpu")  # the only accelerator here; exercises the hooks
    assert getattr(pipe.text_encoder, "_hf_hook", None) is not None
    # the hooks re-place every weight tensor, and oneDNN may pick other kernels for the new buffers:
    # the same images up to float32 rounding, not bit for bit
    np.testing.assert_allclose(pipe(**cond, **kwargs).images, expected, rtol=0, atol=1e-5)


def test_controls_never_silently_off(tiny_model_dir: Path, conditions):
    pipe = fresh(tiny_model_dir)
    cond = conditions(1, 64)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    with pytest.raises(FacegenError, match="install_controls"):
        pipe(**cond, seeds=[1], num_inference_steps=1)
    pipe.install_controls()
    pipe(**cond, seeds=[1], num_inference_steps=1)
    # replacing a control module re-wires the processors to the new one
    other = type(pipe.landmark).from_config(pipe.landmark.config)
    pipe.landmark = other
    assert all(p._controls["lmk"] is other for k, p in pipe.unet.attn_processors.items() if "attn2" in k)
    # a pipeline assembled from parts installs them itself
    rebuilt = FaceCrafterPipeline(**pipe.components, **{k: v for k, v in pipe.config.items()
                                                        if not k.startswith("_") and k not in pipe.components})
    assert all(p._controls["emo"] is rebuilt.emotion for k, p in rebuilt.unet.attn_processors.items() if "attn2" in k)


def test_old_folders_convert_and_still_load(legacy_model_dir: Path, tiny_model_dir: Path, tmp_path: Path, conditions, capsys):
    assert read_model_info(legacy_model_dir).format_version == 1
    legacy = fresh(legacy_model_dir)  # read directly, nothing written
    assert not (legacy_model_dir / "model_index.json").exists()
    assert main(["model", "convert", str(legacy_model_dir), str(tmp_path / "new")]) == 0, capsys.readouterr().err
    converted = DiffusionPipeline.from_pretrained(tmp_path / "new")
    converted.set_progress_bar_config(disable=True)
    assert type(converted) is FaceCrafterPipeline and type(converted.scheduler) is DPMSolverMultistepScheduler
    assert same_weights_and_index(tmp_path / "new", tiny_model_dir, ignore=("provenance",))  # what init writes
    assert read_model_info(tmp_path / "new").source == {"preset": "tiny", "seed": 0}
    cond = conditions(2, 64, seed=6)
    kwargs = dict(use_lmk=torch.tensor([True, False]), use_emo=torch.tensor([True, True]), seeds=[1, 2],
                  num_inference_steps=3, output_type="np")
    assert np.array_equal(legacy(**cond, **kwargs).images, converted(**cond, **kwargs).images)
    # user mistakes: one line, exit 2
    capsys.readouterr()
    assert main(["model", "convert", str(tmp_path / "new"), str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nothing to convert" in err[0]
    assert main(["model", "convert", str(legacy_model_dir), str(tmp_path / "new")]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(FacegenError, match="does not exist"):
        convert_model_folder(tmp_path / "missing", tmp_path / "x")


def test_training_view_loads_both_layouts_and_saves_layout_2(legacy_model_dir: Path, tiny_model_dir: Path, tmp_path: Path):
    for folder in (legacy_model_dir, tiny_model_dir):
        comps = load_components(folder)
        assert comps.info.name == "tiny" and comps.info.source["preset"] == "tiny"
        assert comps.identity_encoder.text_encoder is comps.text_encoder
        assert not any(p.requires_grad for p in comps.landmark.parameters())
        assert comps.scheduler_config["num_train_timesteps"] == 1000
    comps.info = comps.info.model_copy(update={"source": {**comps.info.source, "training": [{"stage": "joint"}]}})
    out = save_components(comps, tmp_path / "exported")
    assert read_model_info(out).source["training"] == [{"stage": "joint"}]
    assert same_weights_and_index(out, tiny_model_dir, ignore=("provenance",))
