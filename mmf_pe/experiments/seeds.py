"""`mmf_pe seeds --config CFG --seeds 1 2 3 [--evaluate] [--report] [key=value ...]`: one MMF run per seed.

Runs go to `<root>/seed_<s>` (root: the `env.save_dir=` override, else `./save/<config name>`), one after another,
each in its own process (`mmf_pe run`). Resumable: a seed whose metrics.jsonl ends `completed` is skipped, one with
a checkpoint continues from it (`checkpoint.resume=True`). A failed seed is reported and the others still run.
"""
import argparse
import os
import subprocess
import sys

from mmf_pe.tracking.jsonl import find_metrics_file, read_events

# the run's own folders: never handed to `mmf_pe evaluate` (it must not write into the seeds root)
RUN_DIR_KEYS = ("env.save_dir=", "env.log_dir=")


def split_overrides(argv):
    """(options for argparse, MMF `key=value` overrides)."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    return [a for a in argv if a not in overrides], overrides


def seed_state(save_dir):
    """'completed', 'partial' (a checkpoint to resume from) or 'new'."""
    metrics_file = find_metrics_file(save_dir)
    if metrics_file:
        ends = [e for e in read_events(metrics_file) if e["event"] == "end"]
        if ends and ends[-1].get("status") == "completed":
            return "completed"
    if os.path.exists(os.path.join(save_dir, "current.ckpt")):
        return "partial"
    return "new"


def plan(config, seeds, overrides, root=None):
    """[(seed, save_dir, state, mmf options)] for every seed."""
    overrides = list(overrides)
    given_root = [o.split("=", 1)[1] for o in overrides if o.startswith("env.save_dir=")]
    overrides = [o for o in overrides if not o.startswith(("env.save_dir=", "training.seed="))]
    name = os.path.splitext(os.path.basename(config))[0]
    root = root or (given_root[-1] if given_root else os.path.join("save", name))
    has_name = any(o.startswith("training.wandb.name=") for o in overrides)
    runs = []
    for seed in seeds:
        save_dir = os.path.join(root, f"seed_{seed}")
        state = seed_state(save_dir)
        options = [f"config={config}"] + overrides + [f"training.seed={seed}", f"env.save_dir={save_dir}"]
        if not has_name:
            options.append(f"training.wandb.name={name}-seed{seed}")
        if state == "partial":
            options.append("checkpoint.resume=True")
        runs.append((seed, save_dir, state, options))
    return root, runs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    options, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="mmf_pe seeds", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--config", required=True, help="the run's YAML (as config= of mmf_run)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--root", help="folder for seed_<s>/ run dirs (default: env.save_dir= or ./save/<config>)")
    parser.add_argument("--evaluate", action="store_true", help="then `mmf_pe evaluate` each trained seed")
    parser.add_argument("--report", action="store_true", help="then `mmf_pe report` over all seeds (<root>/report)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(options)
    if not any(o.startswith("model=") for o in overrides) or not any(o.startswith(("dataset=", "datasets="))
                                                                      for o in overrides):
        parser.error("pass model=... and dataset=... as for mmf_run")
    root, runs = plan(args.config, args.seeds, overrides, args.root)
    python = [sys.executable, "-m", "mmf_pe.cli"]
    failed = []
    for seed, save_dir, state, mmf_options in runs:
        if state == "completed":
            print(f"seed {seed}: {save_dir} already completed, skipped")
            commands = []
        else:
            print(f"seed {seed}: {'resuming' if state == 'partial' else 'training'} in {save_dir}")
            commands = [python + ["run"] + mmf_options]
        if args.evaluate:
            commands.append(python + ["evaluate", save_dir]
                            + [o for o in overrides if o.startswith("env.") and not o.startswith(RUN_DIR_KEYS)])
        for command in commands:
            print("  $ mmf_pe " + " ".join(command[3:]), flush=True)
            if args.dry_run:
                continue
            if subprocess.run(command).returncode != 0:
                print(f"seed {seed}: failed ({command[3]}); see {save_dir}", file=sys.stderr)
                failed.append(seed)
                break
    if args.report and not args.dry_run:
        from mmf_pe.reporting import build_report

        done = [save_dir for seed, save_dir, _, _ in runs if seed not in failed and find_metrics_file(save_dir)]
        if done:
            paths = build_report(done, os.path.join(root, "report"))
            print(f"report: {paths['markdown']}")
    if failed:
        print(f"failed seeds: {failed}", file=sys.stderr)
        return 1
    return 0
