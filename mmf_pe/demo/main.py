"""Main job: generate a small HMD-layout dataset, train the PE model through the real `mmf_run`, print where the logs
are. Rerunning reuses the generated data.

    mmf_pe demo [--out logs/demo] [--updates 200]
"""
import argparse
import os
import re
import subprocess
import sys

from mmf_pe import REPO_ROOT
from mmf_pe.data.tiny_hmd import make_tiny_hmd
from mmf_pe.utils.io import atomic_write_text

SPLITS = {"train": 512, "dev_seen": 128, "dev_unseen": 64, "test_seen": 128, "test_unseen": 64}


def run_config(out_dir, mode):
    path = os.path.join(out_dir, f"hmd_{mode}_demo.yaml")
    atomic_write_text(
        path,
        "includes:\n"
        f"  - {os.path.join(REPO_ROOT, 'projects', 'visual_bert_pe', f'hmd_{mode}.yaml')}\n"
        f"  - {os.path.join(REPO_ROOT, 'projects', 'visual_bert_pe', 'tiny.yaml')}\n",
    )
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "logs", "demo"))
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--mode", default="pe", choices=["fc", "full", "pe"])
    args = parser.parse_args(argv)

    data_dir = os.path.join(args.out, "data")
    print(f"[demo] dataset (HMD layout) in {data_dir}", flush=True)
    make_tiny_hmd(data_dir, splits=SPLITS)
    save_dir = os.path.join(args.out, f"hmd_{args.mode}")
    command = [
        sys.executable, "-m", "mmf_cli.run",
        f"config={run_config(args.out, args.mode)}", "model=visual_bert_pe", "dataset=hateful_memes",
        f"env.save_dir={save_dir}", f"training.max_updates={args.updates}", "training.evaluation_interval=50",
        "training.checkpoint_interval=50", "training.log_interval=50",
    ]
    env = dict(os.environ, MMF_DATA_DIR=data_dir)
    print("[demo] " + " ".join(command[2:]), flush=True)
    result = subprocess.run(command, env=env, text=True, capture_output=True)
    sys.stdout.write(result.stdout[-4000:])
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-6000:])
        print(f"[demo] mmf_run failed (exit {result.returncode})", file=sys.stderr)
        return result.returncode
    best = re.findall(r"best_val/hateful_memes/roc_auc: ([0-9.]+)", result.stdout)
    print(f"[demo] best val/hateful_memes/roc_auc = {best[-1] if best else 'n/a'}")
    print(f"[demo] logs and checkpoints: {save_dir}")
    return 0
