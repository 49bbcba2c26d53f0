"""Which process is which: global rank, world size, local rank and device, from the variables launchers set.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (+ MASTER_ADDR / MASTER_PORT); `srun` sets SLURM_PROCID / SLURM_NTASKS /
SLURM_LOCALID. rc10 reads the global rank from both but starts every rank it did not spawn itself on device 0
(`mmf_cli/run.py`), so all ranks of a node would share `cuda:0`; compat fix F14 uses `local_rank_from_env` instead.
Pure functions of an environment mapping, so they are unit-tested without GPUs.
"""
import os


class RankInfo:
    """rank / world_size / local_rank of this process and the launcher that set them ('torchrun', 'slurm', None)."""

    def __init__(self, rank=0, world_size=1, local_rank=0, launcher=None):
        self.rank, self.world_size, self.local_rank, self.launcher = rank, world_size, local_rank, launcher

    def __repr__(self):
        return (f"RankInfo(rank={self.rank}, world_size={self.world_size}, local_rank={self.local_rank}, "
                f"launcher={self.launcher!r})")


def _int(env, key):
    value = env.get(key)
    if value is None or str(value).strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {key}={value!r} is not an integer") from None


def rank_info(env=None):
    """The RankInfo of this process. torchrun's variables win over SLURM's (torchrun inside an sbatch job)."""
    env = os.environ if env is None else env
    if _int(env, "LOCAL_RANK") is not None and _int(env, "RANK") is not None:
        return RankInfo(_int(env, "RANK"), _int(env, "WORLD_SIZE") or 1, _int(env, "LOCAL_RANK"), "torchrun")
    if _int(env, "SLURM_PROCID") is not None and _int(env, "SLURM_LOCALID") is not None:
        return RankInfo(_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS") or 1, _int(env, "SLURM_LOCALID"), "slurm")
    return RankInfo()


def local_rank_from_env(env=None):
    """This process's index on its node when a launcher started it (torchrun or srun), else None."""
    info = rank_info(env)
    return info.local_rank if info.launcher else None


def device_for(local_rank, cuda_device_count):
    """The device of a process: 'cpu' without CUDA, else 'cuda:<i>'.

    With one visible GPU per process (SLURM `--gpus-per-task=1`, or CUDA_VISIBLE_DEVICES set per rank) every rank uses
    cuda:0; otherwise local rank i uses cuda:i, and more ranks on a node than GPUs is an error (not a silent share).
    """
    if cuda_device_count <= 0:
        return "cpu"
    if cuda_device_count == 1:
        return "cuda:0"
    if not 0 <= local_rank < cuda_device_count:
        raise RuntimeError(
            f"local rank {local_rank} has no GPU: only {cuda_device_count} are visible on this node "
            f"(start at most {cuda_device_count} processes per node, e.g. --gpus {cuda_device_count})"
        )
    return f"cuda:{local_rank}"


def device_index(local_rank, cuda_device_count):
    """`config.device_id` for a process: the CUDA index of `device_for`, or the local rank itself on CPU."""
    device = device_for(local_rank, cuda_device_count)
    return int(device.split(":")[1]) if device.startswith("cuda") else local_rank
