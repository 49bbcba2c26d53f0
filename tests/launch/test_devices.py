"""Rank -> device mapping under the variables torchrun and srun set (no GPU needed), and the sample order."""
import pytest

from mmf_pe.launch.sampling import data_epoch, global_batches
from mmf_pe.utils.devices import device_for, device_index, local_rank_from_env, rank_info

TORCHRUN_NODE1_GPU2 = {  # torchrun --nnodes 2 --nproc_per_node 4, second node, third process
    "RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1",
    "MASTER_ADDR": "node0", "MASTER_PORT": "29500",
}
SLURM_NODE1_TASK3 = {  # srun --nodes=2 --ntasks-per-node=4: task 7 = 4th task of the second node
    "SLURM_JOB_ID": "42", "SLURM_PROCID": "7", "SLURM_NTASKS": "8", "SLURM_LOCALID": "3", "SLURM_NODEID": "1",
    "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_STEP_NODELIST": "gpu[01-02]",
}


def test_torchrun_variables():
    info = rank_info(TORCHRUN_NODE1_GPU2)
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (6, 8, 2, "torchrun")
    assert device_for(info.local_rank, 4) == "cuda:2"


def test_slurm_variables():
    info = rank_info(SLURM_NODE1_TASK3)
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (7, 8, 3, "slurm")
    assert device_for(info.local_rank, 4) == "cuda:3"


def test_torchrun_inside_a_slurm_job_wins():
    env = dict(SLURM_NODE1_TASK3, **TORCHRUN_NODE1_GPU2)
    assert local_rank_from_env(env) == 2 and rank_info(env).launcher == "torchrun"


def test_no_launcher():
    assert local_rank_from_env({}) is None
    assert local_rank_from_env({"RANK": "1"}) is None  # half a torchrun environment is not one
    assert rank_info({}).world_size == 1


@pytest.mark.parametrize("local_rank,count,expected", [
    (0, 0, "cpu"), (3, 0, "cpu"),          # gloo on CPU
    (3, 1, "cuda:0"),                      # one GPU bound per task (--gpus-per-task=1 / CUDA_VISIBLE_DEVICES)
    (0, 8, "cuda:0"), (7, 8, "cuda:7"),
])
def test_device_for(local_rank, count, expected):
    assert device_for(local_rank, count) == expected


def test_more_ranks_than_gpus_is_an_error():
    with pytest.raises(RuntimeError, match="local rank 4 has no GPU: only 4 are visible"):
        device_for(4, 4)


def test_device_index():
    assert device_index(2, 4) == 2 and device_index(2, 1) == 0 and device_index(2, 0) == 2


def test_bad_variable_names_it():
    with pytest.raises(ValueError, match="LOCAL_RANK='x'"):
        rank_info({"RANK": "0", "LOCAL_RANK": "x"})


def test_mmf_epoch_to_data_epoch():
    # rc10 adds world_size - 1 to current_epoch after each pass: 1, 2, 3 in 1 process; 1, 3, 5 in 2; 1, 5, 9 in 4
    for world in (1, 2, 4):
        assert [data_epoch(1 + k * world, world) for k in range(3)] == [0, 1, 2]


@pytest.mark.parametrize("world", [2, 4, 8])
def test_global_batches_do_not_depend_on_world_size(world):
    for epoch in (0, 1):
        assert global_batches(64, 8, world, seed=3, epoch=epoch) == global_batches(64, 8, 1, seed=3, epoch=epoch)
    assert global_batches(64, 8, 1, seed=3, epoch=0) != global_batches(64, 8, 1, seed=3, epoch=1)
