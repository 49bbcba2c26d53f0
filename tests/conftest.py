"""Shared fixtures: one generated tiny HMD dataset per session, config writers, real MMF runs.

`mmf_inprocess(opts)` calls MMF's own `mmf_cli.run.run` in this process (fast; used where isolation is not needed);
`mmf_subprocess(...)` runs the real `mmf_run`/`mmf_predict` console scripts (true end-to-end paths).
"""
import os
import re
import subprocess
import sys

import pytest

from mmf_pe import REPO_ROOT

PROJECT = os.path.join(REPO_ROOT, "projects", "visual_bert_pe")
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="session")
def tiny_hmd(tmp_path_factory):
    """A tiny HMD-layout dataset: annotations jsonl, features/detectron.lmdb (8 x 32), a local tokenizer."""
    from mmf_pe.data.tiny_hmd import make_tiny_hmd

    return make_tiny_hmd(str(tmp_path_factory.mktemp("hmd_data")))


def write_run_config(directory, base, *extra_yaml, tiny=True):
    """A config file that includes a project config (e.g. 'hmd_pe.yaml') [+ tiny.yaml] + extra YAML snippets."""
    os.makedirs(directory, exist_ok=True)
    includes = [os.path.join(PROJECT, base)] + ([os.path.join(PROJECT, "tiny.yaml")] if tiny else [])
    text = "includes:\n" + "".join(f"  - {path}\n" for path in includes)
    for snippet in extra_yaml:
        text += snippet if snippet.endswith("\n") else snippet + "\n"
    path = os.path.join(str(directory), f"run_{os.path.splitext(base)[0]}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture
def mmf_data_env(tiny_hmd, monkeypatch):
    monkeypatch.setenv("MMF_DATA_DIR", tiny_hmd["data_dir"])
    return tiny_hmd


@pytest.fixture
def mmf_inprocess(mmf_data_env):
    """Run MMF in this process: returns the text of the run's train.log."""

    def run(opts, save_dir, predict=False):
        from mmf_cli.run import run as mmf_run

        mmf_run(list(opts) + [f"env.save_dir={save_dir}"] + (["evaluation.predict=true"] if predict else []),
                predict=predict)
        return read_log(save_dir)

    return run


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
