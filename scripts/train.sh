#!/usr/bin/env bash
# Train VisualBERT on one GPU, several GPUs, several nodes (torchrun or SLURM's srun), or N CPU processes (gloo):
#   scripts/train.sh <hmd|mmh> <fc|full|pe> [--gpus G] [--nodes N] [--cpu-procs N] [--dry-run] [key=value ...]
#   scripts/train.sh hmd pe --gpus 4 training.batch_size=32     # batch_size is global: 8 per GPU
#   scripts/train.sh hmd pe --gpus 4 --nodes 2 --dry-run        # the command to run on each node
# The commands are built by mmf_pe/launch/cli.py (--help lists every option).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
exec "$PYTHON" -m mmf_pe.launch "$@"
