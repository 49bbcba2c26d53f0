"""The real path a new user follows once (docs/real-data.md), small and offline: a password-protected Phase-2 zip ->
`mmf_pe convert-hm` -> `mmf_pe download` of the features tarball, COCO VisualBERT and BERT from a local server ->
MMF's real run (`mmf_run`'s entry point, in this process) of `config=projects/visual_bert_pe/hmd_pe.yaml` with tiny
overrides (`checkpoint.resume_zoo`, as MMF main's recipe spells it) -> `mmf_pe evaluate` -> `mmf_pe report`.
Then the same run saved the way the paper's patched code
saves it (model visual_bert, `output.AdaptComb1/2`) is evaluated and scores identically."""
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import torch

from mmf_pe import REPO_ROOT
from mmf_pe.tracking import find_metrics_file
from mmf_pe_testing import read_log
from tests.datasets.hateful_memes.helpers import PASSWORD, sha256, zip_release
from tests.real_files import as_paper_run, coco_visual_bert_state, write_hub_bert
from tests.zoo_server import ZooServer

COCO = "/models/visual_bert/visual_bert.pretrained.coco_train_val.tar.gz"
FEATURES = "/datasets/hateful_memes/defaults/features/features_2020_10_01.tar.gz"


def _tar_gz(add):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add(tar)
    return buffer.getvalue()


def _published_files(tiny_hmd, root):
    """What the publishers ship, made from the tiny dataset: the challenge zip (jsonl + img/), MMF's features tarball
    (detectron.lmdb), MMF's COCO VisualBERT tarball (model.pth + config.yaml), a hub-layout BERT."""
    release = os.path.join(root, "release", "data")
    os.makedirs(os.path.join(release, "img"))
    for name in os.listdir(os.path.join(tiny_hmd["root"], "annotations")):
        shutil.copy(os.path.join(tiny_hmd["root"], "annotations", name), release)
        for line in open(os.path.join(release, name)):
            with open(os.path.join(release, json.loads(line)["img"]), "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + line.encode())
    zip_path = zip_release(os.path.dirname(release), os.path.join(root, "hateful_memes.zip"))
    features = _tar_gz(lambda tar: tar.add(tiny_hmd["features"], arcname="detectron.lmdb"))
    state = coco_visual_bert_state(visual_dim=32)
    model = io.BytesIO()
    torch.save({"model": state}, model)

    def add_coco(tar):
        for name, data in (("model.pth", model.getvalue()), ("config.yaml", b"model_config:\n  visual_bert: {}\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    bert = os.path.join(root, "hub_bert")
    write_hub_bert(bert)
    return zip_path, {COCO: _tar_gz(add_coco), FEATURES: features}, {
        "bert-base-uncased": {n: open(os.path.join(bert, n), "rb").read() for n in os.listdir(bert)}}, state


def test_real_path_from_zip_to_report(tiny_hmd, tmp_path, monkeypatch, capsys):
    from mmf_cli.run import run as mmf_run

    from mmf_pe import cli
    from mmf_pe.experiments.evaluate import evaluate_run

    zip_path, files, hub, coco = _published_files(tiny_hmd, str(tmp_path))
    server = ZooServer(files, hub=hub).start()
    data, weights = str(tmp_path / "mmf_data"), str(tmp_path / "mmf_data" / "weights")
    zoo_file = tmp_path / "zoo.json"
    zoo_file.write_text(json.dumps({
        "visual_bert.pretrained.coco": {"url": server.url + COCO, "sha256": _sha(files[COCO])},
        "hateful_memes.defaults": {"url": server.url + FEATURES, "sha256": _sha(files[FEATURES])}}))
    for key, value in {"MMF_DATA_DIR": data, "MMF_PE_ZOO_FILE": str(zoo_file),
                       "MMF_PE_HM_CHECKSUMS": sha256(zip_path)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MMF_PE_WEIGHTS_DIR", raising=False)
    try:
        # 1-2. the challenge zip converted (the zip stays); the features and BERT fetched (BERT in a process of its
        # own: huggingface_hub reads HF_ENDPOINT when imported)
        assert cli.main(["convert-hm", "--src", zip_path, "--password", PASSWORD]) == 0 and os.path.isfile(zip_path)
        assert cli.main(["download", "hateful_memes.defaults"]) == 0
        env = dict(os.environ, HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
        command = [sys.executable, "-m", "mmf_pe.cli", "download", "bert-base-uncased", "--data-dir", data]
        result = subprocess.run(command, env=env, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:]
        # 3. the paper's PE recipe, tiny: COCO VisualBERT through checkpoint.resume_zoo (fetched on first use)
        save = str(tmp_path / "run")
        capsys.readouterr()
        mmf_run(["config=projects/visual_bert_pe/hmd_pe.yaml", "model=visual_bert_pe", "dataset=hateful_memes",
                 f"env.save_dir={save}", "checkpoint.resume_file=None",
                 "checkpoint.resume_zoo=visual_bert.pretrained.coco",
                 "model_config.visual_bert_pe.visual_embedding_dim=32",
                 "model_config.visual_bert_pe.pe.paper.reduction_factor=4",
                 "dataset_config.hateful_memes.max_features=8",
                 "dataset_config.hateful_memes.processors.text_processor.params.max_seq_length=16",
                 "training.max_updates=4", "training.batch_size=8", "training.evaluation_interval=4",
                 "training.checkpoint_interval=4", "training.log_interval=2", "training.num_workers=0",
                 "training.device=cpu", "scheduler.params.num_warmup_steps=1"])
    finally:
        server.stop()
    log = read_log(save)
    assert "visual_bert_pe mode=pe (paper)" in log and "NOT loaded" not in log
    assert "BERT weights" in log and "visual_bert.pretrained.coco: loaded" in log, log[-4000:]
    assert os.path.isfile(os.path.join(weights, "visual_bert_coco", "model.pth"))
    best = torch.load(os.path.join(save, "best.ckpt"), weights_only=True)["model"]
    assert torch.equal(best["model.bert.embeddings.word_embeddings.weight"],  # frozen in PE: still COCO's
                       coco["model.bert.embeddings.word_embeddings.weight"])
    # 4-5. the test splits, then the report
    assert cli.main(["evaluate", save]) == 0
    out = capsys.readouterr().out
    assert f"{save} test_seen: " in out and f"{save} test_unseen: " in out
    assert cli.main(["report", save, "--out", str(tmp_path / "report")]) == 0
    summary = json.load(open(tmp_path / "report" / "summary.json"))
    assert {row["split"] for row in summary["table2"]} >= {"val", "test_seen", "test_unseen"}

    # the same weights, saved the way the paper's patched code saves them, score the same
    paper = str(tmp_path / "paper_run")
    as_paper_run(save, paper)
    theirs = evaluate_run(paper, splits=["test_seen"])
    ours = [json.loads(line) for line in open(find_metrics_file(save))]
    ours = next(e for e in ours if e["event"] == "test" and e["split"] == "test_seen")["metrics"]
    assert theirs["test_seen"] == ours


def _sha(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()
