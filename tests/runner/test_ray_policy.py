"""The one Ray connection policy (`facegen.ray_session`) and the one distributor sizing
(`facegen.runner.make_distributor`) shared by balance, extract, verify and train. Real Ray throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from facegen.errors import FacegenError
from facegen.ray_session import ray_init_kwargs
from facegen.runner import InProcessDistributor, RayDistributor, connect_ray, make_distributor


def test_policy_order_explicit_then_env_then_a_private_local_ray(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local = ray_init_kwargs()
    assert local["address"] == "local"  # never ray.init()'s "join whatever runs on this machine"
    assert local["include_dashboard"] is False and local["log_to_driver"] is False
    assert ray_init_kwargs(num_cpus=3)["num_cpus"] == 3
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    joined = ray_init_kwargs(num_cpus=3)
    assert joined["address"] == "10.0.0.1:6379" and "num_cpus" not in joined and "include_dashboard" not in joined
    assert ray_init_kwargs("ray://head:10001")["address"] == "ray://head:10001"
    loud = ray_init_kwargs(quiet=False)  # training streams its workers' output
    assert loud["log_to_driver"] is True and "configure_logging" not in loud


def test_an_initialised_session_is_used_as_it_is(ray_local):
    assert connect_ray() is False and connect_ray("ray://elsewhere:10001") is False
    assert ray_local.is_initialized()


def test_sizing_fits_the_cluster_and_validates(ray_local):
    dist, threads = make_distributor(2, gpus_per_actor=0.0)
    assert isinstance(dist, RayDistributor)
    assert (dist.num_actors, dist.num_cpus, dist.num_gpus, threads) == (2, 1.0, 0.0, 1)  # ray_local has 2 CPUs
    dist, threads = make_distributor(None, cpus_per_actor=0.5)
    assert (dist.num_actors, dist.num_cpus, dist.num_gpus, threads) == (1, 0.5, 0.0, 1)  # no GPUs: CPU actors
    dist.close()
    assert ray_local.is_initialized()  # not started by make_distributor: not shut down by it
    dist, threads = make_distributor(4, max_cpus_per_actor=0.25)
    assert (dist.num_actors, dist.num_cpus) == (4, 0.25)  # capped below the even split (0.5)
    dist, threads = make_distributor(5, in_process=True, max_attempts=4)
    assert isinstance(dist, InProcessDistributor) and dist.max_attempts == 4 and threads is None
    assert make_distributor(in_process=True)[0].max_attempts == InProcessDistributor().max_attempts
    dist, _ = make_distributor(3, spare_actors=1)
    assert (dist.num_actors, dist.spare_actors, dist.num_cpus) == (3, 1, 0.5)  # spares get their share of the CPUs
    for kwargs, where in (
        ({"num_actors": 0}, "--num-actors"),
        ({"cpus_per_actor": 0}, "--cpus-per-actor"),
        ({"gpus_per_actor": -1}, "--gpus-per-actor"),
        ({"spare_actors": -1}, "--spare-actors"),
        ({"spare_actors": 1, "in_process": True}, "--spare-actors"),
    ):
        with pytest.raises(FacegenError, match=where):
            make_distributor(**kwargs)


def test_analysis_commands_size_workers_through_the_shared_policy(ray_local):
    from facegen.cli.analysis_cmds import _distributor

    assert isinstance(_distributor(0, None, None), InProcessDistributor)
    dist = _distributor(2, None, None)
    assert isinstance(dist, RayDistributor) and (dist.num_actors, dist.num_cpus, dist.num_gpus) == (2, 1.0, 0.0)
    assert _distributor(1, None, None).num_cpus == 1.0  # ray_local has 2 CPUs: capped at 1 per analysis actor
    assert _distributor(4, None, None).num_cpus == 0.5
    assert _distributor(1, 0.25, None).num_cpus == 0.25
    with pytest.raises(FacegenError, match="--workers must be >= 0"):
        _distributor(-1, None, None)


@pytest.mark.slow
def test_a_ray_started_for_a_distributor_is_its_to_shut_down(tmp_path):
    """In a fresh process (the session's Ray must not be touched): no address, no $RAY_ADDRESS -> a new local
    Ray, owned by the distributor; closing it shuts Ray down."""
    script = textwrap.dedent(
        """
        import ray
        from facegen.runner import make_distributor
        dist, threads = make_distributor(1, gpus_per_actor=0.0)
        assert ray.is_initialized() and dist._started_ray
        cpus = ray.cluster_resources()["CPU"]
        assert dist.num_cpus == cpus and threads == max(1, int(cpus)), (dist.num_cpus, cpus, threads)
        dist.close()
        assert not ray.is_initialized()
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
