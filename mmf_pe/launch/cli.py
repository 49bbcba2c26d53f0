"""`scripts/train.sh <hmd|mmh> <fc|full|pe> [--gpus G] [--nodes N] [--cpu-procs N] [--dry-run] [overrides...]`.

Builds the command(s) of a run and execs them; `--dry-run` prints them instead. Workers are started by PyTorch's own
tools: one plain process for 1 GPU, `torchrun` for G GPUs on a node (or for N nodes, one command per node), `srun`
inside a SLURM allocation; rc10 reads the ranks they set (with compat fix F14 for the device of each rank).
`training.batch_size` is the GLOBAL batch (MMF's convention): each of the W processes takes batch_size / W, so a run
means the same thing on 1 GPU and on 8.
"""
import argparse
import os
import shlex
import sys

from mmf_pe import REPO_ROOT

DATASETS = {"hmd": "hateful_memes", "mmh": "mmh"}
MODES = ("fc", "full", "pe")
DEFAULT_PORT = 29500


class LaunchError(ValueError):
    pass


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="scripts/train.sh", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="key=value arguments go to MMF (e.g. training.batch_size=32).")
    parser.add_argument("dataset", choices=sorted(DATASETS), help="hmd: Hateful Memes; mmh: MMHS150K")
    parser.add_argument("mode", choices=MODES, help="fc / full / pe (the paper's adapters)")
    parser.add_argument("--gpus", type=int, default=1, help="processes (GPUs) per node (default 1)")
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--cpu-procs", type=int, default=0, metavar="N",
                        help="N gloo processes on this machine's CPU (testing multi-process runs without GPUs)")
    parser.add_argument("--launcher", choices=("auto", "torchrun", "slurm"), default="auto",
                        help="multi-node launcher; auto: srun inside a SLURM allocation, else torchrun")
    parser.add_argument("--node-rank", type=int, default=None, help="torchrun multi-node: this node's index "
                        "(default $NODE_RANK; with --dry-run and none given, every node's command is printed)")
    parser.add_argument("--master-addr", default=None, help="torchrun multi-node: node 0's address ($MASTER_ADDR)")
    parser.add_argument("--master-port", type=int, default=None, help=f"rendezvous port (default {DEFAULT_PORT})")
    parser.add_argument("--config", default=None,
                        help="a YAML to use instead of projects/visual_bert_pe/<dataset>_<mode>.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args, rest = parser.parse_known_args(argv)
    bad = [token for token in rest if token.startswith("-") or "=" not in token]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (MMF overrides look like key=value)")
    args.overrides = rest
    for name in ("gpus", "nodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.cpu_procs < 0 or (args.cpu_procs and (args.gpus > 1 or args.nodes > 1)):
        parser.error("--cpu-procs N runs N processes on one CPU machine: it goes without --gpus/--nodes")
    return args


class Plan:
    """What will run: a list of (title, environment additions, argv) and a one-line summary."""

    def __init__(self, summary, commands):
        self.summary, self.commands = summary, commands

    def render(self):
        lines = [f"# {self.summary}"]
        for title, env, argv in self.commands:
            if title:
                lines.append(f"# {title}")
            lines.append(" ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [shlex.join(argv)]))
        return "\n".join(lines)


def mmf_args(args):
    config = args.config or os.path.join(REPO_ROOT, "projects", "visual_bert_pe", f"{args.dataset}_{args.mode}.yaml")
    return [f"config={os.path.abspath(config)}", "model=visual_bert_pe", f"dataset={DATASETS[args.dataset]}"]


def check_batch_size(overrides, world_size):
    for token in overrides:
        key, _, value = token.partition("=")
        if key == "training.batch_size" and value.isdigit() and int(value) % world_size:
            raise LaunchError(f"training.batch_size={value} is the global batch and must be divisible by the "
                              f"{world_size} processes")


def build_plan(args, environ=None, python=None):
    environ = os.environ if environ is None else environ
    python = python or sys.executable
    worker = ["-m", "mmf_pe.cli", "run"] + mmf_args(args)
    torchrun = [python, "-m", "torch.distributed.run"]
    if args.cpu_procs:
        world = args.cpu_procs
        check_batch_size(args.overrides, world)
        env = {"CUDA_VISIBLE_DEVICES": ""}
        if world == 1:
            return Plan("1 process on CPU", [("", env, [python] + worker + args.overrides)])
        argv = torchrun + ["--standalone", "--nnodes", "1", "--nproc_per_node", str(world)] + worker
        return Plan(f"{world} gloo processes on CPU; training.batch_size is global ({world} shares)",
                    [("", env, argv + ["distributed.backend=gloo"] + args.overrides)])

    world = args.gpus * args.nodes
    check_batch_size(args.overrides, world)
    overrides = ["distributed.backend=nccl"] + args.overrides
    if world == 1:
        return Plan("1 process, 1 GPU", [("", {}, [python] + worker + args.overrides)])
    summary = (f"{args.nodes} node(s) x {args.gpus} GPU(s) = {world} processes; "
               f"training.batch_size is global ({world} shares)")
    if args.nodes == 1:
        argv = torchrun + ["--standalone", "--nnodes", "1", "--nproc_per_node", str(args.gpus)] + worker + overrides
        return Plan(summary + " [torchrun]", [("", {}, argv)])

    port = args.master_port or int(environ.get("MASTER_PORT", DEFAULT_PORT))
    launcher = args.launcher
    if launcher == "auto":
        launcher = "slurm" if "SLURM_JOB_ID" in environ else "torchrun"
    if launcher == "slurm":
        # rc10 reads SLURM's variables itself (infer_init_method): rank = SLURM_PROCID, device = SLURM_LOCALID (F14)
        argv = ["srun", f"--nodes={args.nodes}", f"--ntasks-per-node={args.gpus}", f"--gpus-per-node={args.gpus}",
                "--kill-on-bad-exit=1", python] + worker + overrides + [
                f"distributed.world_size={world}", f"distributed.port={port}"]
        return Plan(summary + " [srun, inside an sbatch/salloc allocation]", [("", {}, argv)])

    master = args.master_addr or environ.get("MASTER_ADDR")
    if not master:
        raise LaunchError("torchrun over several nodes needs node 0's address: --master-addr HOST (or $MASTER_ADDR)")
    node_rank = args.node_rank if args.node_rank is not None else environ.get("NODE_RANK")
    if node_rank is None and not args.dry_run:
        raise LaunchError("torchrun over several nodes: run this on every node with --node-rank 0..N-1 "
                          "(or $NODE_RANK); --dry-run prints all of them")
    nodes = range(args.nodes) if node_rank is None else [int(node_rank)]
    commands = []
    for rank in nodes:
        if not 0 <= rank < args.nodes:
            raise LaunchError(f"--node-rank {rank} is not in 0..{args.nodes - 1}")
        argv = torchrun + ["--nnodes", str(args.nodes), "--nproc_per_node", str(args.gpus), "--node_rank", str(rank),
                           "--master_addr", master, "--master_port", str(port)] + worker + overrides
        commands.append((f"on node {rank} of {args.nodes}:", {}, argv))
    return Plan(summary + " [torchrun, one command per node]", commands)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        plan = build_plan(args)
    except LaunchError as error:
        print(f"train.sh: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(plan.render())
        return 0
    print(plan.render(), flush=True)
    (_, env, command), = plan.commands
    os.execvpe(command[0], command, dict(os.environ, **env))
