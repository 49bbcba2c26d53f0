"""Fixtures of the data tests: private copies of the session's tiny HMD data, an fp16-stored variant."""
import os
import shutil

import pytest


@pytest.fixture
def hmd(tiny_hmd, tmp_path):
    """A private copy of the tiny HMD data: {"data_dir", "root", "features", "annotations", "tokenizer"}."""
    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_hmd["data_dir"], data_dir)
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    return {"data_dir": data_dir, "root": root, "features": os.path.join(root, "features", "detectron.lmdb"),
            "annotations": os.path.join(root, "annotations"), "tokenizer": os.path.join(data_dir, "tokenizer")}


@pytest.fixture(scope="session")
def tiny_hmd_fp16(tmp_path_factory):
    """The tiny HMD dataset with its region features stored float16 (as `mmf_pe extract --feature-dtype float16`)."""
    from mmf_pe.testing.tiny_hmd import make_tiny_hmd

    return make_tiny_hmd(str(tmp_path_factory.mktemp("hmd_fp16")), feature_dtype="float16")
