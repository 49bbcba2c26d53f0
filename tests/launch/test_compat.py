"""Compat fixes F12-F14 and F16: each shown failing on rc10's own code (or without the fix), then fixed; no GPU
needed."""
import importlib.util
import os
import pickle

import pytest
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from mmf_pe.compat import fixes


@pytest.fixture
def pristine_distributed():
    """A fresh, unpatched copy of rc10's mmf/utils/distributed.py (the import hook patches only the real name)."""
    import mmf.utils.distributed as patched

    path = os.path.join(os.path.dirname(patched.__file__), "distributed.py")
    spec = importlib.util.spec_from_file_location("rc10_distributed_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_gloo_group(monkeypatch):
    """Rank 1 of 2 in an initialised process group, on a PyTorch build without NCCL (the CPU wheels)."""
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 1)


def test_f12_rank_and_world_size_without_nccl(pristine_distributed, fake_gloo_group):
    module = pristine_distributed
    assert (module.get_rank(), module.get_world_size(), module.is_master()) == (0, 1, True)  # rc10: every rank "master"
    fixes.patch_distributed_helpers(module)
    assert (module.get_rank(), module.get_world_size(), module.is_master()) == (1, 2, False)


def test_f12_is_what_mmf_uses():
    import mmf.utils.checkpoint as checkpoint
    import mmf.utils.distributed as distributed
    import mmf.utils.general as general

    assert distributed.get_world_size.__module__ == "mmf_pe.compat.fixes"
    # modules that imported the helpers by name got the fixed ones (batch size per process, rank-0-only saving)
    assert general.get_world_size is distributed.get_world_size
    assert checkpoint.is_master is distributed.is_master and checkpoint.synchronize is distributed.synchronize


def test_f13_distributed_init_on_cpu(pristine_distributed, monkeypatch):
    module = pristine_distributed
    calls = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.update(kwargs))
    monkeypatch.setattr(dist, "all_reduce", lambda tensor: calls.update(warmup=tensor.device.type))
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(module, "suppress_output", lambda is_master: None)
    config = OmegaConf.create({"distributed": {"world_size": 2, "rank": 0, "backend": "nccl",
                                               "init_method": "tcp://localhost:1"}})
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError), match="NVIDIA driver|CUDA"):
            module.distributed_init(config)
    fixes.patch_distributed_init(module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path, also on a machine with a GPU
    assert module.distributed_init(config) == 0
    assert calls["backend"] == "gloo" and config.distributed.backend == "gloo" and calls["warmup"] == "cpu"
    assert (calls["world_size"], calls["rank"], calls["init_method"]) == (2, 0, "tcp://localhost:1")


def _distributed_main_device(function, monkeypatch, env, no_spawn=True, spawned_index=0):
    import mmf_cli.run as run

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    seen = {}
    monkeypatch.setattr(run, "main", lambda configuration, **kwargs: seen.update(device=configuration.config.device_id))
    configuration = type("Configuration", (), {})()
    configuration.config = OmegaConf.create({"device_id": 0, "start_rank": 0,
                                             "distributed": {"rank": 5, "no_spawn": no_spawn}})
    configuration.get_config = lambda: configuration.config
    function(spawned_index, configuration)
    return seen["device"]


def test_f14_each_rank_on_its_own_gpu(monkeypatch):
    import mmf_cli.run as run

    torchrun = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}
    slurm = {"SLURM_PROCID": "7", "SLURM_LOCALID": "3", "SLURM_NTASKS": "8"}
    assert _distributed_main_device(run.distributed_main.__wrapped__, monkeypatch, torchrun) == 0  # rc10: cuda:0
    assert _distributed_main_device(run.distributed_main, monkeypatch, torchrun) == 1
    assert _distributed_main_device(run.distributed_main.__wrapped__, monkeypatch, slurm) == 0
    assert _distributed_main_device(run.distributed_main, monkeypatch, slurm) == 3
    # MMF's own spawn (one process per GPU): the spawn index stays the device
    assert _distributed_main_device(run.distributed_main, monkeypatch, {}, no_spawn=False, spawned_index=2) == 2


def test_f14_still_picklable_for_spawn():
    import mmf_cli.run as run

    assert pickle.loads(pickle.dumps(run.distributed_main)) is run.distributed_main


def test_f16_exit_handler_registered_once_after_init(pristine_distributed, monkeypatch):
    import atexit

    module = pristine_distributed
    registered = []
    monkeypatch.setattr(atexit, "register", lambda function: registered.append(function))
    monkeypatch.setattr(module, "distributed_init", lambda config: 1)  # rc10's (with F13) set the group up
    fixes.patch_release_process_group_at_exit(module)
    assert module.distributed_init(None) == 1 and module.distributed_init(None) == 1
    assert registered == [fixes.release_process_group]


def _f16_rank(rank, store, out_dir):
    """One rank of a 2-process gloo group set up by rc10's own (patched) distributed_init, like a real run's."""
    import atexit

    from mmf_pe.compat import install

    install()
    import mmf.utils.distributed as distributed

    def record():  # registered before the group exists, so it runs after F16's handler (atexit is LIFO)
        with open(os.path.join(out_dir, f"rank{rank}"), "w") as f:
            f.write(str(dist.is_initialized()))

    atexit.register(record)
    config = OmegaConf.create({"distributed": {"world_size": 2, "rank": rank, "backend": "gloo",
                                               "init_method": f"file://{store}"}})
    distributed.distributed_init(config)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
    model(torch.ones(1, 2)).sum().backward()
    distributed.reduce_dict({"loss": torch.ones(1)})  # rc10's last collective of a run: a reduce to rank 0


@pytest.mark.parametrize("skip", ["", "F16"])
def test_f16_group_drained_and_destroyed_before_shutdown(skip, tmp_path):
    """With F16 both ranks have ended the group when the interpreter shuts down; without it the group is left to
    shutdown (where the abort happens). Runs the ranks with and without the fix (MMF_PE_COMPAT_SKIP)."""
    import subprocess
    import sys

    script = ("import sys; sys.path.insert(0, sys.argv[3]); import test_compat as t; "
              "t._f16_rank(int(sys.argv[1]), sys.argv[2], sys.argv[4])")
    env = dict(os.environ, OMP_NUM_THREADS="1", MMF_PE_COMPAT_SKIP=skip)
    here = os.path.dirname(os.path.abspath(__file__))
    ranks = [subprocess.Popen([sys.executable, "-c", script, str(r), str(tmp_path / "store"), here, str(tmp_path)],
                              env=env, cwd=here, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in ranks]
    at_exit = [open(tmp_path / f"rank{r}").read() for r in range(2)]
    if skip == "":
        assert [p.returncode for p in ranks] == [0, 0], outputs
        assert at_exit == ["False", "False"], outputs
    else:  # without the fix the group is still up at shutdown (and now and then a rank aborts there: -6)
        assert at_exit == ["True", "True"] and {p.returncode for p in ranks} <= {0, -6}, outputs


def test_f16_crashing_rank_skips_the_exit_barrier(monkeypatch):
    """After an uncaught exception the other ranks will not come to a barrier: end the group at once, no 60 s wait."""
    import sys

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "gloo")
    monkeypatch.setattr(dist, "barrier", lambda **kwargs: calls.append("barrier") or _DoneWork())
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    fixes.release_process_group(pause_s=0)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    monkeypatch.setattr(sys, "last_value", RuntimeError("the run failed"), raising=False)
    fixes.release_process_group(pause_s=0)
    assert calls == ["destroy"]


class _DoneWork:
    def wait(self, timeout=None):
        return True
