"""Multi-process training: the launcher behind `scripts/train.sh`, rank -> device mapping, DDP wiring for the trainer.

`python -m mmf_pe.launch <hmd|mmh> <fc|full|pe> --gpus 4 [--nodes N] [--cpu-procs N] [--dry-run] [overrides...]`
"""
