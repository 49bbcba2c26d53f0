"""Session data for the mmh tests: one miniature MMHS150K tree, converted once, with a feature LMDB written directly."""
import contextlib
import io
import os
import shutil

import pytest

from mmf_pe.datasets.mmh import convert
from mmf_pe.testing.tiny_hmd import write_tokenizer
from mmf_pe.testing.tiny_mmh import make_tiny_mmhs150k
from tests.datasets.mmh.helpers import read_jsonl, write_features


@pytest.fixture(scope="session")
def mini_mmh(tmp_path_factory):
    """{"src": miniature MMHS150K facts, "data_dir": converted MMF data dir (+ tokenizer), "root", "stdout"}."""
    base = tmp_path_factory.mktemp("mmh")
    facts = make_tiny_mmhs150k(str(base / "MMHS150K"))
    data_dir = str(base / "data")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert convert.main(["--src", str(base), "--data-dir", data_dir, "--workers", "2"]) == 0
    write_tokenizer(os.path.join(data_dir, "tokenizer"))
    root = os.path.join(data_dir, "datasets", "mmh", "defaults")
    return {"src": facts, "data_dir": data_dir, "root": root, "stdout": out.getvalue(), "base": base}


@pytest.fixture(scope="session")
def mmh_features(mini_mmh, tmp_path_factory):
    """A copy of the converted data with features/regions.lmdb for every converted tweet."""
    data_dir = str(tmp_path_factory.mktemp("mmh_features") / "data")
    shutil.copytree(mini_mmh["data_dir"], data_dir, symlinks=True)
    root = os.path.join(data_dir, "datasets", "mmh", "defaults")
    ids = [r["id"] for split in ("train", "val", "test")
           for r in read_jsonl(os.path.join(root, "annotations", f"{split}.jsonl"))]
    write_features(root, ids)
    return {"data_dir": data_dir, "root": root}


@pytest.fixture(scope="session")
def timed_mmh(tmp_path_factory):
    """A miniature MMHS150K whose tweets have known posting times, shuffled across the official splits (so a time
    split differs from them), converted, with features for every tweet: {"facts", "data_dir", "root", "stdout"}."""
    import numpy as np

    base = tmp_path_factory.mktemp("mmh_timed")
    sizes = {"train": 24, "val": 12, "test": 12}
    start = 1_500_000_000_000  # 2017-07-14
    times = (start + np.random.default_rng(3).permutation(48) * 3_600_000).tolist()  # hourly, shuffled
    facts = make_tiny_mmhs150k(str(base / "MMHS150K"), sizes=sizes, times_ms=times)
    data_dir = str(base / "data")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert convert.main(["--src", str(base), "--data-dir", data_dir, "--workers", "2"]) == 0
    write_tokenizer(os.path.join(data_dir, "tokenizer"))
    root = os.path.join(data_dir, "datasets", "mmh", "defaults")
    ids = [r["id"] for split in ("train", "val", "test")
           for r in read_jsonl(os.path.join(root, "annotations", f"{split}.jsonl"))]
    write_features(root, ids)
    return {"facts": facts, "data_dir": data_dir, "root": root, "stdout": out.getvalue()}


@pytest.fixture(scope="session")
def time_split_run(timed_mmh, tmp_path_factory):
    """One short real PE run of projects/visual_bert_pe/mmh_time_pe.yaml on `timed_mmh`: {"save_dir", "log"}."""
    from mmf_pe_testing import write_run_config
    from tests.datasets.mmh.helpers import BASE, RUN_YAML, run_mmf

    root = tmp_path_factory.mktemp("mmh_time_run")
    config = write_run_config(root, "mmh_time_pe.yaml", RUN_YAML)
    with pytest.MonkeyPatch.context() as monkeypatch:
        log = run_mmf([f"config={config}", *BASE], root / "train", timed_mmh["data_dir"], monkeypatch)
    return {"save_dir": root / "train", "log": log, "data_dir": timed_mmh["data_dir"]}
