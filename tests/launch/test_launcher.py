"""scripts/train.sh: the exact commands it runs (dry-run) for 1 node x 4 GPUs, 2 nodes x 4 GPUs, CPU processes."""
import os
import subprocess
import sys

import pytest

from mmf_pe import REPO_ROOT
from mmf_pe.launch.cli import LaunchError, build_plan, main, parse_args

PY = sys.executable
CONFIG = os.path.join(REPO_ROOT, "projects", "visual_bert_pe", "hmd_pe.yaml")
WORKER = f"-m mmf_pe.cli run config={CONFIG} model=visual_bert_pe dataset=hateful_memes"


def dry_run(argv, capsys, environ=None):
    args = parse_args(list(argv) + ["--dry-run"])
    return build_plan(args, environ=environ or {}).render()


def test_4_gpus(capsys):
    assert main(["hmd", "pe", "--gpus", "4", "--dry-run", "training.batch_size=32"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "# 1 node(s) x 4 GPU(s) = 4 processes; training.batch_size is global (4 shares) [torchrun]",
        f"{PY} -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 4 {WORKER} "
        "distributed.backend=nccl training.batch_size=32",
    ]


def test_2_nodes_x_4_gpus_torchrun(capsys):
    out = dry_run(["hmd", "pe", "--gpus", "4", "--nodes", "2", "--master-addr", "node0"], capsys)
    node = (f"{PY} -m torch.distributed.run --nnodes 2 --nproc_per_node 4 --node_rank {{}} --master_addr node0 "
            f"--master_port 29500 {WORKER} distributed.backend=nccl")
    assert out.splitlines() == [
        "# 2 node(s) x 4 GPU(s) = 8 processes; training.batch_size is global (8 shares) "
        "[torchrun, one command per node]",
        "# on node 0 of 2:", node.format(0),
        "# on node 1 of 2:", node.format(1),
    ]
    # on one node of a real run only that node's command (from --node-rank or $NODE_RANK)
    env = {"MASTER_ADDR": "node0", "NODE_RANK": "1", "MASTER_PORT": "1234"}
    out = dry_run(["hmd", "pe", "--gpus", "4", "--nodes", "2"], capsys, environ=env)
    assert out.splitlines()[1:] == ["# on node 1 of 2:", node.format(1).replace("29500", "1234")]


def test_2_nodes_x_4_gpus_slurm(capsys):
    out = dry_run(["hmd", "pe", "--gpus", "4", "--nodes", "2"], capsys, environ={"SLURM_JOB_ID": "7"})
    assert out.splitlines() == [
        "# 2 node(s) x 4 GPU(s) = 8 processes; training.batch_size is global (8 shares) "
        "[srun, inside an sbatch/salloc allocation]",
        f"srun --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 --kill-on-bad-exit=1 {PY} {WORKER} "
        "distributed.backend=nccl distributed.world_size=8 distributed.port=29500",
    ]


def test_cpu_processes_and_single_process(capsys):
    out = dry_run(["mmh", "fc", "--cpu-procs", "2", "training.max_updates=5"], capsys)
    mmh = f"config={REPO_ROOT}/projects/visual_bert_pe/mmh_fc.yaml model=visual_bert_pe dataset=mmh"
    assert out.splitlines()[1] == (
        f"CUDA_VISIBLE_DEVICES='' {PY} -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2 "
        f"-m mmf_pe.cli run {mmh} distributed.backend=gloo training.max_updates=5")
    assert dry_run(["hmd", "pe"], capsys).splitlines()[1] == f"{PY} {WORKER}"


def test_train_sh_dry_run():
    result = subprocess.run([os.path.join(REPO_ROOT, "scripts", "train.sh"), "hmd", "full", "--gpus", "4",
                             "--dry-run"], env=dict(os.environ, PYTHON=PY), text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        f"{PY} -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 4 "
        f"{WORKER.replace('hmd_pe', 'hmd_full')} distributed.backend=nccl")


@pytest.mark.parametrize("argv,message", [
    (["hmd", "pe", "--gpus", "3", "training.batch_size=16"], "global batch and must be divisible by the 3"),
    (["hmd", "pe", "--gpus", "4", "--nodes", "2"], "needs node 0's address"),
    (["hmd", "pe", "--gpus", "4", "--nodes", "2", "--master-addr", "n0", "--node-rank", "2"], "not in 0..1"),
])
def test_launch_errors(argv, message):
    with pytest.raises(LaunchError, match=message):
        build_plan(parse_args(argv), environ={})


def test_a_real_multi_node_run_needs_the_node_rank(capsys, monkeypatch):
    monkeypatch.delenv("NODE_RANK", raising=False)
    assert main(["hmd", "pe", "--gpus", "4", "--nodes", "2", "--master-addr", "n0", "--launcher", "torchrun"]) == 2
    assert "--node-rank" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["hmd", "pe", "--cpu-procs", "2", "--gpus", "2"], ["hmd", "pe", "--bogus"],
                                  ["hmd", "lora"], ["hmd", "pe", "--gpus", "0"]])
def test_bad_arguments(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)
