"""`mmf_pe download` against a local server (127.0.0.1, started here, serving tarballs built here): verified,
resumable (truncated download, server gone mid-file), extracted in place, idempotent; offline hints name the command
and the URL."""
import io
import json
import os
import tarfile
import types

import pytest
import torch

from mmf_pe import cli
from mmf_pe.datasets import zoo
from mmf_pe.utils.download import DownloadError
from tests.real_files import coco_visual_bert_state
from tests.zoo_server import ZooServer

COCO = "/models/visual_bert/visual_bert.pretrained.coco_train_val.tar.gz"
FEATURES = "/datasets/hateful_memes/defaults/features/features_2020_10_01.tar.gz"


def tarball(entries):
    """A .tar.gz of {name: bytes}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def checkpoint_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zoo_files():
    state = {k: v for k, v in list(coco_visual_bert_state().items())[:6]}
    coco = tarball({"model.pth": checkpoint_bytes(state), "config.yaml": b"model_config:\n  visual_bert: {}\n"})
    # padding makes the archive big enough to cut in the middle
    features = tarball({"detectron.lmdb/data.mdb": os.urandom(300_000), "detectron.lmdb/lock.mdb": b"\0" * 8192})
    return {"state": state, COCO: coco, FEATURES: features}


@pytest.fixture
def server(zoo_files, tmp_path, monkeypatch):
    """The server and an MMF_PE_ZOO_FILE pointing both zoo keys at it (with the test tarballs' sha256)."""
    running = ZooServer({COCO: zoo_files[COCO], FEATURES: zoo_files[FEATURES]}).start()

    def point_at(srv, **sha):
        overrides = {
            "visual_bert.pretrained.coco": {"url": srv.url + COCO, "sha256": sha.get("coco") or _sha(zoo_files[COCO])},
            "hateful_memes.defaults": {"url": srv.url + FEATURES, "sha256": _sha(zoo_files[FEATURES])}}
        path = tmp_path / "zoo.json"
        path.write_text(json.dumps(overrides))
        monkeypatch.setenv("MMF_PE_ZOO_FILE", str(path))

    running.point_at = point_at
    point_at(running)
    monkeypatch.setenv("MMF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MMF_PE_WEIGHTS_DIR", raising=False)
    yield running
    running.stop()


def _sha(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_coco_visual_bert_download_extracts_to_the_configs_path_and_is_idempotent(server, zoo_files, tmp_path):
    assert cli.main(["download", "visual_bert.pretrained.coco"]) == 0
    folder = tmp_path / "data" / "weights" / "visual_bert_coco"
    state = torch.load(folder / "model.pth", weights_only=True)
    assert set(state) == set(zoo_files["state"]) and all(torch.equal(state[k], zoo_files["state"][k]) for k in state)
    assert (folder / "config.yaml").is_file() and sorted(os.listdir(folder)) == [
        ".mmf_pe_download.json", "config.yaml", "model.pth"]  # archive removed after extraction, no .part left
    requests = len(server.requests)
    assert zoo.download("visual_bert.pretrained.coco") == str(folder)
    assert len(server.requests) == requests  # nothing fetched again


def test_bad_checksum_deletes_the_download_and_says_so(server, tmp_path):
    server.point_at(server, coco="0" * 64)
    with pytest.raises(DownloadError, match="is not the expected 0000"):
        zoo.download("visual_bert.pretrained.coco")
    folder = tmp_path / "data" / "weights" / "visual_bert_coco"
    assert not (folder / "model.pth").exists() and os.listdir(folder) == []


def test_truncated_download_and_server_gone_mid_file_resume(server, zoo_files, tmp_path):
    size = len(zoo_files[FEATURES])
    server.cut[FEATURES] = size // 3
    with pytest.raises(DownloadError, match=r"interrupted after .*run the same command again to resume"):
        zoo.download("hateful_memes.defaults")
    part = tmp_path / "data" / "datasets" / "hateful_memes" / "defaults" / "features" / "features.tar.gz.part"
    assert part.stat().st_size == size // 3

    server.cut[FEATURES] = size // 3  # the next piece, then the server goes away entirely
    with pytest.raises(DownloadError, match="interrupted"):
        zoo.download("hateful_memes.defaults")
    assert part.stat().st_size == 2 * (size // 3)
    server.stop()
    with pytest.raises(DownloadError, match="cannot connect.*partial file is kept"):
        zoo.download("hateful_memes.defaults")

    again = ZooServer(server.files).start()  # back, on another port
    try:
        server.point_at(again)
        assert cli.main(["download", "hateful_memes.defaults"]) == 0
        assert again.requests == [(FEATURES, f"bytes={2 * (size // 3)}-")]  # resumed, not restarted
    finally:
        again.stop()
    lmdb = part.parent / "detectron.lmdb"
    assert (lmdb / "data.mdb").stat().st_size == 300_000 and not part.exists()


def test_offline_hints_name_the_command_and_the_url(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from mmf_pe.data.checks import DataCheckError, check_pretrained_checkpoint

    monkeypatch.delenv("MMF_PE_ZOO_FILE", raising=False)
    config = OmegaConf.create({"checkpoint": {"resume_file": str(tmp_path / "visual_bert_coco" / "model.pth")}})
    with pytest.raises(DataCheckError) as error:
        check_pretrained_checkpoint(config)
    assert "mmf_pe download visual_bert.pretrained.coco" in str(error.value)
    assert "https://dl.fbaipublicfiles.com/mmf/data/models/visual_bert/visual_bert.pretrained.coco_train_val.tar.gz" \
        in str(error.value)
    assert "mmf_pe download hateful_memes.defaults" in zoo.how_to_fetch("hateful_memes.defaults")


def _load_from_zoo(checkpoint_class, key, data_dir, weights_dir):
    """`checkpoint.resume_zoo=<key>` as rc10's `_load` asks the trainer's checkpoint for it."""
    from omegaconf import OmegaConf

    from mmf_pe_testing import bare_checkpoint

    env = OmegaConf.create({"env": {"data_dir": str(data_dir), "weights_dir": str(weights_dir)}})
    checkpoint = bare_checkpoint(checkpoint_class, trainer=types.SimpleNamespace(config=env))
    checkpoint.upgrade_state_dict = lambda state: state
    return checkpoint._load_from_zoo(key)


def test_f19_resume_zoo_key_fetches_through_the_download_code(server, zoo_files, tmp_path):
    from mmf.utils.checkpoint import Checkpoint

    from mmf_pe.trainers.checkpoint import MMFPECheckpoint

    key = "visual_bert.pretrained.coco"
    with pytest.raises(TypeError, match="argument of type 'NoneType' is not iterable"):  # rc10: the empty zoo
        _load_from_zoo(Checkpoint, key, tmp_path / "data", tmp_path / "w")
    state, go_on = _load_from_zoo(MMFPECheckpoint, key, tmp_path / "data", tmp_path / "w")
    assert go_on and set(state) == set(zoo_files["state"])
    assert set(torch.load(tmp_path / "w" / "visual_bert_coco" / "model.pth", weights_only=True)) == set(state)

    server.stop()  # offline: a key not yet fetched stops with the command and the URL
    with pytest.raises(DownloadError, match=r"mmf_pe download visual_bert.pretrained.coco +\(fetches http://127"):
        _load_from_zoo(MMFPECheckpoint, key, tmp_path / "data", tmp_path / "elsewhere")


def test_bert_base_uncased_through_huggingface_hub_at_a_revision(tmp_path):
    """`mmf_pe download bert-base-uncased` with HF_ENDPOINT at a local hub: the hub-layout files, the resolved
    commit beside them; a rerun fetches no file again."""
    import subprocess
    import sys

    from tests.real_files import write_hub_bert
    from tests.zoo_server import HUB_COMMIT

    source = tmp_path / "hub_copy"
    write_hub_bert(str(source))
    files = {name: (source / name).read_bytes() for name in os.listdir(source)}
    hub = ZooServer({}, hub={"bert-base-uncased": files}).start()
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "mmf_pe.cli", "download", "bert-base-uncased", "--data-dir", str(tmp_path / "d"),
               "--weights-dir", str(tmp_path / "w")]
    try:
        for attempt in range(2):
            result = subprocess.run(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    timeout=120)
            assert result.returncode == 0, result.stdout[-3000:]
            fetched = [path for path, _ in hub.requests if "/resolve/" in path and not path.startswith("HEAD")]
            assert len(fetched) == len(zoo.BERT_FILES), fetched  # counted over both runs: the rerun fetched none
        result = subprocess.run(command[:5] + ["--revision", "no-such-branch"] + command[5:], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        assert result.returncode == 1 and "bert-base-uncased@no-such-branch" in result.stdout, result.stdout[-3000:]
        assert "Traceback" not in result.stdout
    finally:
        hub.stop()
    folder = tmp_path / "w" / "bert-base-uncased"
    for name in zoo.BERT_FILES:
        assert (folder / name).read_bytes() == files[name], name
    assert not (folder / "pytorch_model.bin").exists()  # only the listed files
    assert json.loads((folder / "REVISION.json").read_text()) == {"repo_id": "bert-base-uncased", "revision": "main",
                                                                  "commit": HUB_COMMIT}


def test_mmf_docs_key_with_defaults_resumes_through_the_same_entry(server, zoo_files, tmp_path):
    """`visual_bert.pretrained.coco.defaults` (MMF's docs) is the same file as `visual_bert.pretrained.coco`: the same
    override, URL and folder; `checkpoint.resume_zoo=<it>` loads instead of rc10's TypeError."""
    key = "visual_bert.pretrained.coco.defaults"
    assert zoo.how_to_fetch(key) == f"mmf_pe download {key}   (fetches {server.url}{COCO})"
    from mmf_pe.trainers.checkpoint import MMFPECheckpoint

    _load_from_zoo(MMFPECheckpoint, key, tmp_path / "data", tmp_path / "w")
    state = torch.load(tmp_path / "w" / "visual_bert_coco" / "model.pth", weights_only=True)
    assert set(state) == set(zoo_files["state"])


@pytest.mark.parametrize("folder", ["visual_bert.pretrained.coco.defaults", "visual_bert.pretrained.coco"])
def test_a_checkpoint_in_mmfs_cache_layout_is_found_not_downloaded_again(folder, server, zoo_files, tmp_path):
    from omegaconf import OmegaConf

    from mmf_pe.data.checks import DataCheckError, check_pretrained_checkpoint

    cache = tmp_path / "data" / "models" / folder
    cache.mkdir(parents=True)
    cached = cache / "visual_bert.pretrained.coco_train_val.pth"
    torch.save(zoo_files["state"], cached)
    (cache / "config.yaml").write_text("model_config:\n  visual_bert: {}\n")
    resume_file = tmp_path / "data" / "weights" / "visual_bert_coco" / "model.pth"
    config = OmegaConf.create({"env": {"data_dir": str(tmp_path / "data")},
                               "checkpoint": {"resume_file": str(resume_file)}})
    with pytest.raises(DataCheckError, match="MMF's cache already holds") as error:
        check_pretrained_checkpoint(config)
    assert f"VisualBERT: {cached}." in str(error.value) and "links it" in str(error.value)
    assert "fetches" not in str(error.value)
    assert cli.main(["download", "visual_bert.pretrained.coco"]) == 0
    assert server.requests == []  # nothing fetched
    assert torch.equal(torch.load(resume_file, weights_only=True)[next(iter(zoo_files["state"]))],
                       next(iter(zoo_files["state"].values())))
    assert (resume_file.parent / "config.yaml").is_file()
    check_pretrained_checkpoint(config)  # now in place
    assert zoo.download("visual_bert.pretrained.coco") == str(resume_file.parent) and server.requests == []


def test_a_verified_checkpoint_holding_an_omegaconf_config_loads_with_an_allow_list_only(server, zoo_files, tmp_path):
    """MMF's 2020 model.pth may pickle its OmegaConf config beside the tensors: weights_only refuses it. After
    `mmf_pe download` verified the archive (and recorded the file's sha256) it is read with exactly the OmegaConf
    classes allowed, by our readers and by the mmf_pe trainer's checkpoint class (F27); a copy without that record,
    or changed bytes, is refused; a class outside the allow-list stays refused even for a verified file."""
    import shutil
    import types

    from omegaconf import OmegaConf

    from mmf_pe.models.pretrained_weights import read_state_dict
    from mmf_pe.trainers.checkpoint import MMFPECheckpoint
    from mmf_pe_testing import bare_checkpoint

    config = OmegaConf.create({"model_config": {"visual_bert": {"hidden_size": 32, "layers": [1, 2]}}})
    with_config = tarball({"model.pth": checkpoint_bytes({"model": zoo_files["state"], "config": config})})
    server.files[COCO] = with_config
    server.point_at(server, coco=_sha(with_config))
    folder = zoo.download("visual_bert.pretrained.coco")
    model = os.path.join(folder, "model.pth")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(model, weights_only=True)
    state = read_state_dict(model)
    assert set(state) == set(zoo_files["state"])
    ours = bare_checkpoint(MMFPECheckpoint, device="cpu", ckpt_foldername=str(tmp_path), ckpt_prefix="",
                           config=OmegaConf.create({"checkpoint": {"resume": False}}))
    loaded = ours._torch_load(model)  # checkpoint.resume_file=<it>
    assert isinstance(loaded["config"], type(config)) and loaded["config"].model_config.visual_bert.hidden_size == 32

    copy = tmp_path / "elsewhere" / "model.pth"
    copy.parent.mkdir()
    shutil.copy(model, copy)
    with pytest.raises(ValueError, match="omegaconf.dictconfig.DictConfig.*not fetched by `mmf_pe download`"):
        read_state_dict(str(copy))
    with pytest.raises(RuntimeError, match="cannot be read as a checkpoint.*not fetched by `mmf_pe download`"):
        ours._torch_load(str(copy))
    with open(model, "ab") as f:
        f.write(b"\0")  # changed bytes: the recorded sha256 no longer matches
    with pytest.raises(ValueError, match="not the one `mmf_pe download` recorded"):
        read_state_dict(model)

    hostile = tarball({"model.pth": checkpoint_bytes({"model": zoo_files["state"], "extra": types.SimpleNamespace()})})
    server.files[COCO] = hostile
    server.point_at(server, coco=_sha(hostile))
    shutil.rmtree(folder)
    model = os.path.join(zoo.download("visual_bert.pretrained.coco"), "model.pth")
    with pytest.raises(ValueError, match="outside the allow-list: types.SimpleNamespace"):
        read_state_dict(model)


def test_zoo_file_override_as_docs_real_data_shows_it(tmp_path, monkeypatch):
    """docs/real-data.md documents MMF_PE_ZOO_FILE with an example; that example, as written, moves the key (and its
    `.defaults` spelling) to the mirror. The dataset config no longer claims `zoo_requirements: []` never downloads."""
    import re

    from mmf_pe import PACKAGE_DIR, REPO_ROOT

    with open(os.path.join(REPO_ROOT, "docs", "real-data.md")) as f:
        text = f.read()
    paragraph = text[text.index("`MMF_PE_ZOO_FILE=<file.json>`"):]
    example = re.search(r"`(\{.*?\}\})`", paragraph, flags=re.S).group(1).replace("\n", " ")
    path = tmp_path / "zoo.json"
    path.write_text(example)
    monkeypatch.setenv("MMF_PE_ZOO_FILE", str(path))
    mirror = json.loads(example)["visual_bert.pretrained.coco"]["url"]
    for key in ("visual_bert.pretrained.coco", "visual_bert.pretrained.coco.defaults"):
        assert zoo.zoo_entries()[key]["url"] == mirror and f"(fetches {mirror})" in zoo.how_to_fetch(key)
    with open(os.path.join(PACKAGE_DIR, "configs", "mmf", "datasets", "hateful_memes", "defaults.yaml")) as f:
        config = f.read()
    assert "never download" not in config and "empty stand-in" in config
