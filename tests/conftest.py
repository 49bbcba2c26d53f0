"""Shared fixtures: one generated tiny HMD dataset per session, config writers, real MMF runs.

`mmf_inprocess(opts)` calls MMF's own `mmf_cli.run.run` in this process (fast; used where isolation is not needed);
`mmf_subprocess(...)` runs the real `mmf_run`/`mmf_predict` console scripts (true end-to-end paths).
"""

import pytest

from mmf_pe_testing import read_log, reset_mmf_state


@pytest.fixture(scope="session")
def tiny_hmd(tmp_path_factory):
    """A tiny HMD-layout dataset: annotations jsonl, features/detectron.lmdb (8 x 32), a local tokenizer."""
    from mmf_pe.testing.tiny_hmd import make_tiny_hmd

    return make_tiny_hmd(str(tmp_path_factory.mktemp("hmd_data")))


@pytest.fixture(scope="session")
def vl_hmd(tmp_path_factory):
    """Generated PNG memes + a tiny random model of every frozen_vl encoder class (tests/models/frozen_vl, serve)."""
    from mmf_pe.testing.tiny_vl import make_tiny_vl_hmd

    return make_tiny_vl_hmd(str(tmp_path_factory.mktemp("vl_hmd")))


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


@pytest.fixture(autouse=True)
def fresh_mmf_state():
    """Each test starts with MMF's run state cleared: rc10 keeps processors (`<dataset>_text_processor`), the config and
    the writer in its registry and reuses them, so an in-process run would otherwise inherit the previous run's
    tokenizer; its log handlers would write to streams pytest has closed."""
    _reset_mmf_state()
    yield
    _reset_mmf_state()


def _reset_mmf_state():
    reset_mmf_state()
