"""``facegen submit``: run a facegen command as a Ray job on a cluster (wraps ``ray job submit``).

A pipeline spec (``pipelines/*.yaml``) names the facegen arguments and the job's runtime environment::

    name: balance-a100
    facegen: [balance, --manifest, manifests/affect.yaml, --out, s3://bucket/ds, --num-actors, "8"]
    runtime_env: {working_dir: ., env_vars: {FACEGEN_CACHE: /tmp/facegen}}
    entrypoint_num_cpus: 1
"""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facegen.errors import FacegenError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


class PipelineSpec(BaseModel):
    """A job spec from ``pipelines/*.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    facegen: list[str] = Field(min_length=1)  # arguments after `facegen`
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    address: str | None = None


def load_pipeline(path: str | Path) -> PipelineSpec:
    file = Path(path)
    if not file.is_file():
        raise FacegenError("pipeline spec not found; check the path (see pipelines/)", where=str(path))
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(map(str, err["loc"])) or "<root>"
        raise FacegenError(f"{field}: {err['msg']}; fix the spec (see pipelines/cpu-demo.yaml)", where=str(path)) from None


@dataclass
class JobCommand:
    argv: list[str]
    env: dict[str, str]

    def shell(self) -> str:
        auth = f"RAY_AUTH_MODE={self.env['RAY_AUTH_MODE']} " if "RAY_AUTH_MODE" in self.env else ""
        return auth + shlex.join(self.argv)


def build_job_command(
    facegen_args: list[str],
    *,
    address: str | None = None,
    working_dir: str | None = ".",
    spec: PipelineSpec | None = None,
    no_wait: bool = False,
    submission_id: str | None = None,
) -> JobCommand:
    """The ``ray job submit`` argv (+ environment) that runs ``facegen <args>`` on the cluster.

    Ray 2.60 clusters use token auth; the client needs ``RAY_AUTH_MODE=token`` (and the cluster's token in
    ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``), so it is set unless the caller's environment says otherwise.
    """
    args = list(spec.facegen if spec else []) + list(facegen_args)
    if not args:
        raise FacegenError("nothing to run; give a facegen command after `--` (e.g. -- balance -m M -o DIR) or --pipeline", where="submit")
    if args[0] == "submit":
        raise FacegenError("cannot submit `submit`; give the command to run on the cluster", where="submit")
    address = address or (spec.address if spec else None) or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    argv = ["ray", "job", "submit", "--address", address]
    runtime_env = dict(spec.runtime_env) if spec else {}
    if working_dir is not None and "working_dir" not in runtime_env:
        argv += ["--working-dir", working_dir]
    if runtime_env:
        fd, path = tempfile.mkstemp(prefix="facegen-runtime-env-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(runtime_env, f)
        argv += ["--runtime-env", path]
    if spec and spec.entrypoint_num_cpus is not None:
        argv += ["--entrypoint-num-cpus", str(spec.entrypoint_num_cpus)]
    if spec and spec.entrypoint_num_gpus is not None:
        argv += ["--entrypoint-num-gpus", str(spec.entrypoint_num_gpus)]
    if spec and spec.entrypoint_memory is not None:
        argv += ["--entrypoint-memory", str(spec.entrypoint_memory)]
    if submission_id:
        argv += ["--submission-id", submission_id]
    if no_wait:
        argv.append("--no-wait")
    argv += ["--", "facegen", *args]
    env = {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    return JobCommand(argv, env)
