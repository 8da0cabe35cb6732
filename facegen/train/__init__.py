"""FaceCrafter training (paper section 3.2) as Ray Train jobs: pre-train LMK, pre-train EMO, joint
(plus `vae` and `base` for a domain without pre-trained weights; the stage table is `stages`).

Public API::

    from facegen.train.config import load_stage_config, stage_config_from_dict, StageConfig, STAGES
    from facegen.train.run import run_stage, TrainResult, build_trainer

    cfg = load_stage_config("training/joint.yaml", "joint", {"steps": 100, "ray.num_workers": 2})
    result = run_stage(cfg)            # resumes if run.name + storage path has a checkpoint
    result.model_dir                   # <output>/model: a complete model folder (FaceCrafterPipeline loads it)

Rooms: `config` (typed stage configs), `pairs` (ID-image partner rules), `data` (labels + tar images ->
sharded, resumable pair stream -> tensors), `losses` (mixed conditioning switches, AD loss eqs. 2-3),
`trainee` (trainable parts per stage, eqs. 4-5), `loop` (the one recipe every stage runs: set up, train
step, checkpoint; in a Ray Train worker or in-process), `stages` (what differs between stages),
`checkpoint` (checkpoint files), `weights` (init from pre-trained modules, export), `run` (driver).

Outputs of a stage: ``<output>/metrics.{jsonl,csv}`` (one row per optimiser step, written by rank 0),
``<storage_path>/<run name>/checkpoint_*`` (Ray Train), ``<output>/model`` (the export).
"""
