"""Session data for drift / adapt: the serve tests' tiny served folder (base + fc / pe / lora adapters, a foreign
adapter) and two labelled periods of memes; tests that change the folder work on their own copy."""
import os
import shutil

import pytest

from tests.experiments.helpers import make_period
from tests.serve.helpers import make_folder


@pytest.fixture(scope="session")
def periods(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("periods"))
    paths = make_folder(root)
    data = os.path.join(root, "data")
    os.makedirs(data)
    paths["old"] = make_period(data, "old", "old", 64, seed=1)
    paths["new"] = make_period(data, "new", "new", 64, seed=2)
    paths["new_eval"] = make_period(data, "new_eval", "new", 32, seed=3, start_ms=None)
    paths["data"] = data
    return paths


@pytest.fixture
def served_copy(periods, tmp_path):
    """A private copy of the served folder (publishing replaces an adapter in it)."""
    folder = str(tmp_path / "served")
    shutil.copytree(periods["served"], folder, symlinks=True)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tiny_hmd, tmp_path_factory):
    """One 20-update PE (paper) visual_bert_pe run on the tiny HMD data (text normalisation on, as new runs have it)
    and a `twins` split: each test_seen meme again with its caption disguised (look-alike letters, zero-width, bidi)."""
    import json

    from mmf_cli.run import run as mmf_run

    from mmf_pe.utils.attacks import attack_text, resolve, rng_for
    from mmf_pe_testing import write_run_config

    root = tmp_path_factory.mktemp("tiny_run")
    config = write_run_config(root / "config", "hmd_pe.yaml")
    save_dir = root / "save"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMF_DATA_DIR", tiny_hmd["data_dir"])
        mmf_run([f"config={config}", "model=visual_bert_pe", "dataset=hateful_memes", f"env.save_dir={save_dir}"])
    annotations = os.path.join(tiny_hmd["root"], "annotations")
    records = [json.loads(line) for line in open(os.path.join(annotations, "test_seen.jsonl")) if line.strip()]
    params = resolve(["homoglyphs+zero_width"], {"homoglyphs": {"rate": 1.0}})
    twins = [dict(r, id=r["id"] + 50000, text=attack_text(r["text"], "homoglyphs+zero_width", params,
                                                           rng_for(0, i, "twin"))) for i, r in enumerate(records)]
    with open(os.path.join(annotations, "twins.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records + twins))
    return {"save_dir": str(save_dir), "data": tiny_hmd, "records": records, "twins": twins}


@pytest.fixture(scope="session")
def tiny_vl_run(vl_hmd, tmp_path_factory):
    """One 8-update frozen_vl run (tiny random CLIP, concat head, fc) on the generated image memes."""
    from mmf_cli.run import run as mmf_run

    from tests.models.frozen_vl.helpers import write_run_config

    root = tmp_path_factory.mktemp("tiny_vl_run")
    config = write_run_config(root / "config", "hmd_clip_concat.yaml")
    save_dir = root / "save"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMF_DATA_DIR", vl_hmd["data_dir"])
        mmf_run([f"config={config}", "model=frozen_vl", "dataset=hateful_memes", f"env.save_dir={save_dir}"])
    return {"save_dir": str(save_dir), "data": vl_hmd, "images": os.path.join(vl_hmd["root"], "images"),
            "annotations": os.path.join(vl_hmd["root"], "annotations", "test_seen.jsonl")}
