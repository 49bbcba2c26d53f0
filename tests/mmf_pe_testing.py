"""Helpers shared by the tests (importable as `mmf_pe_testing`: tests/ is on pytest's pythonpath).

The convention: fixtures live only in conftest.py files (tests/conftest.py for shared ones, one per folder for that
folder's data); plain helpers live here or in a folder's helpers.py, imported by dotted path (tests.tuners.helpers).
"""
import logging
import os
import re
import subprocess
import sys

from mmf_pe import REPO_ROOT

PROJECT = os.path.join(REPO_ROOT, "projects", "visual_bert_pe")
PROJECTS = os.path.join(REPO_ROOT, "projects")
BIN = os.path.dirname(sys.executable)


def write_run_config(directory, base, *extra_yaml, tiny=True, project="visual_bert_pe"):
    """A config file that includes a project config (e.g. 'hmd_pe.yaml') [+ the project's tiny.yaml] + extra YAML
    snippets. Every test run config is written here; each model's project has one tiny.yaml."""
    os.makedirs(directory, exist_ok=True)
    folder = os.path.join(PROJECTS, project)
    includes = [os.path.join(folder, base)] + ([os.path.join(folder, "tiny.yaml")] if tiny else [])
    text = "includes:\n" + "".join(f"  - {path}\n" for path in includes)
    for snippet in extra_yaml:
        text += snippet if snippet.endswith("\n") else snippet + "\n"
    path = os.path.join(str(directory), f"run_{os.path.splitext(base)[0]}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def mmf_subprocess(args, data_dir, cwd, tool="mmf_run", env=None, timeout=600, check=True):
    """Run a console script of this venv; returns the CompletedProcess (stdout+stderr in .stdout)."""
    environment = dict(os.environ, MMF_DATA_DIR=data_dir, **(env or {}))
    command = [os.path.join(BIN, tool)] + list(args) if os.path.exists(os.path.join(BIN, tool)) else [tool] + list(args)
    result = subprocess.run(command, cwd=cwd, env=environment, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} failed ({result.returncode}):\n{result.stdout[-5000:]}")
    return result


def read_log(save_dir):
    path = os.path.join(str(save_dir), "train.log")
    with open(path) as f:
        return f.read()


def metric_values(log_text, name="val/hateful_memes/roc_auc"):
    """All values of one metric in MMF's log lines ('name: value')."""
    return [float(v) for v in re.findall(re.escape(name) + r": ([0-9.]+)", log_text)]


def reset_mmf_state():
    """Clear MMF's run state (registry state, log handlers) so a next in-process run starts fresh."""
    registry_module = sys.modules.get("mmf.common.registry")
    if registry_module is not None:
        state = registry_module.registry.mapping["state"]
        for key in list(state):
            if key not in ("imports_setup", "pythia_path", "mmf_root"):
                del state[key]
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name.startswith("mmf") or name in ("py.warnings", "stdout")):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()


def bare_checkpoint(checkpoint_class, **attributes):
    """An rc10-style Checkpoint object with just `attributes` set (rc10's __init__ needs a built trainer and writes
    config.yaml): rc10's class and ours compared on the same state."""
    checkpoint = checkpoint_class.__new__(checkpoint_class)
    checkpoint.__dict__.update(attributes)
    return checkpoint
