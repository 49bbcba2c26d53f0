"""Hostile and broken input files (issue 19, the data side): nothing runs code, nothing bus-errors, every bad record
is named. Items: 1 (feature records never run code: F20, F22, F23, extract-merge), 4 (damaged LMDB: F21),
5 (pre-flight checks), 9 (extraction stays inside the image root), 10 (convert-mmh and a GT entry without text),
14 (VG detector without a valid proposal)."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import lmdb
import numpy as np
import pytest
from omegaconf import OmegaConf

from mmf_pe import REPO_ROOT
from mmf_pe_testing import BIN, mmf_subprocess, write_run_config
from tests.data.helpers import Hostile, hostile_record, put_raw

BASE = ["model=visual_bert_pe", "dataset=hateful_memes"]
HMD_DEFAULTS = os.path.join(REPO_ROOT, "mmf_pe", "configs", "mmf", "datasets", "hateful_memes", "defaults.yaml")


def hmd_config(hmd, **extra):
    config = OmegaConf.load(HMD_DEFAULTS).dataset_config.hateful_memes
    config.data_dir = os.path.join(hmd["data_dir"], "datasets")
    config.processors.text_processor.params.tokenizer_config.type = hmd["tokenizer"]
    for key, value in extra.items():
        config[key] = value
    return config


def ids_of(hmd, split):
    with open(os.path.join(hmd["annotations"], f"{split}.jsonl")) as f:
        return [json.loads(line)["img"].split("/")[-1].split(".")[0] for line in f]


def run_python(code, skip=(), timeout=300):
    environment = dict(os.environ, MMF_PE_COMPAT_SKIP=",".join(skip))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=environment, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


# --- item 1: feature records never run code ----------------------------------------------------------------------
def test_f20_hostile_lmdb_record_is_refused_under_mmf_run(hmd, tmp_path):
    marker = str(tmp_path / "created_by_a_feature_record")
    put_raw(hmd["features"], {key: hostile_record(marker) for key in ids_of(hmd, "train")})
    # the pre-flight scan would refuse it first; `off` leaves it to MMF's own reader (F20)
    config = write_run_config(tmp_path, "hmd_pe.yaml", "dataset_config:\n  hateful_memes:\n    features_scan: 'off'\n")
    result = mmf_subprocess([f"config={config}", *BASE, "training.max_updates=2", f"env.save_dir={tmp_path / 's'}"],
                            hmd["data_dir"], cwd=str(tmp_path), check=False)
    assert result.returncode != 0
    assert not os.path.exists(marker), "a feature record ran code"
    assert "refused to unpickle" in result.stdout and hmd["features"] in result.stdout, result.stdout[-3000:]


def hostile_files(hmd, tmp_path):
    """A hostile record in the LMDB, a hostile `_info.npy` and a hostile `.npy` annotation file; their markers."""
    markers = {name: str(tmp_path / f"created_by_{name}") for name in ("lmdb", "npy", "imdb")}
    put_raw(hmd["features"], {ids_of(hmd, "train")[0]: hostile_record(markers["lmdb"])})
    npy_dir = tmp_path / "npy_features"
    npy_dir.mkdir()
    np.save(npy_dir / "1.npy", np.ones((2, 4), np.float32))
    np.save(npy_dir / "1_info.npy", np.array({"bbox": Hostile(markers["npy"])}, dtype=object), allow_pickle=True)
    np.save(tmp_path / "imdb.npy", np.array([{"image_id": Hostile(markers["imdb"])}], dtype=object),
            allow_pickle=True)
    reads = {"lmdb": (hmd["features"], f"{hmd['features']}/{ids_of(hmd, 'train')[0]}.npy"),
             "npy": str(npy_dir / "1.npy"), "imdb": str(tmp_path / "imdb.npy")}
    return markers, reads


def read_with_rc10(reads):
    """What MMF's dataset code does with each file: {name: the error's text, or 'read'}."""
    from mmf.datasets.databases.annotation_database import AnnotationDatabase
    from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader, PaddedFasterRCNNFeatureReader

    calls = {"lmdb": lambda: LMDBFeatureReader(8, reads["lmdb"][0]).read(reads["lmdb"][1]),
             "npy": lambda: PaddedFasterRCNNFeatureReader(8).read(reads["npy"]),
             "imdb": lambda: AnnotationDatabase(None, reads["imdb"])}
    outcome = {}
    for name, call in calls.items():
        try:
            call()
            outcome[name] = "read"
        except Exception as error:  # noqa: BLE001 - the outcome is what is asserted
            outcome[name] = f"{type(error).__name__}: {error}"
    return outcome


def truncate_half(hmd):
    data = os.path.join(hmd["features"], "data.mdb")
    size = os.path.getsize(data)
    with open(data, "r+b") as f:
        f.truncate(size // 2)
    return data, size // 2


def test_f20_f21_f22_f23_without_the_fixes_files_run_code_and_bus_error(hmd, tmp_path):
    """The failures the fixes remove, in one process (importing MMF is the slow part): rc10's three unpickling
    readers run a hostile file's code, and a truncated LMDB then kills the process with SIGBUS (-7), no message."""
    markers, reads = hostile_files(hmd, tmp_path)
    truncated = tmp_path / "truncated"
    shutil.copytree(hmd["data_dir"], truncated)
    short = {"features": str(truncated / os.path.relpath(hmd["features"], hmd["data_dir"]))}
    truncate_half(short)
    keys = ids_of(hmd, "train") + ids_of(hmd, "test_seen")
    code = f"""
        import sys
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(__file__))!r}]
        from test_hostile_files import read_with_rc10
        print(read_with_rc10({reads!r}), flush=True)
        from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader
        reader = LMDBFeatureReader(8, {short['features']!r})
        for key in {keys!r}:
            reader.read({short['features']!r} + "/" + key + ".npy")
        print("no bus error")
    """
    result = run_python(code, skip=["F20", "F21", "F22", "F23"])
    assert all(os.path.exists(m) for m in markers.values()), result.stdout[-3000:]
    assert result.returncode == -7, (result.returncode, result.stdout[-2000:])  # SIGBUS


def test_f20_f22_f23_rc10_readers_refuse_hostile_files(hmd, tmp_path):
    markers, reads = hostile_files(hmd, tmp_path)
    outcome = read_with_rc10(reads)
    assert not any(os.path.exists(m) for m in markers.values()), outcome
    assert all(text.startswith("UnsafeRecordError") and "refused to unpickle io.open" in text
               for text in outcome.values()), outcome
    assert f"{hmd['features']} key '{ids_of(hmd, 'train')[0]}'" in outcome["lmdb"]
    assert "1_info.npy" in outcome["npy"] and "imdb.npy" in outcome["imdb"]


def test_extract_merge_refuses_a_hostile_shard(hmd, tmp_path):
    from mmf_pe.data.lmdb_features import LMDBFeatureWriter
    from mmf_pe.extraction.store import write_state

    marker = str(tmp_path / "created_by_merge")
    shards = []
    for index in range(2):
        path = str(tmp_path / f"shard{index}.lmdb")
        with LMDBFeatureWriter(path) as writer:
            writer.put(f"img{index}", {"features": np.zeros((2, 4), np.float32)})
        write_state(path, {}, settings={"detector": "test", "shard": [index, 2]}, state="complete")
        shards.append(path)
    put_raw(shards[1], {"img1": hostile_record(marker)})
    result = subprocess.run([os.path.join(BIN, "mmf_pe"), "extract-merge", "--no-progress", "--out",
                             str(tmp_path / "merged.lmdb"), *shards], text=True, capture_output=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert not os.path.exists(marker)
    assert f"{shards[1]} key 'img1': refused to unpickle io.open" in result.stderr


def test_written_files_keep_mmfs_exact_format_and_old_numpy_paths_load(tmp_path):
    """Safe reading changes nothing on disk: records are still `pickle.dumps` of the dict; numpy 1's `numpy.core`
    names (older LMDBs) load too."""
    from mmf_pe.data.lmdb_features import LMDBFeatureWriter, read_record
    from mmf_pe.utils import safe_pickle

    record = {"features": np.arange(6, dtype=np.float32).reshape(2, 3), "num_boxes": np.int64(2), "objects": [1, 2],
              "image_width": 64, "names": ("a", b"b", None, True, 1.5)}
    path = str(tmp_path / "f.lmdb")
    with LMDBFeatureWriter(path) as writer:
        writer.put("x", record)
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        assert pickle.loads(txn.get(b"x"))["image_width"] == 64 and pickle.loads(txn.get(b"keys")) == [b"x"]
    env.close()
    loaded = read_record(path, "x")
    assert np.array_equal(loaded["features"], record["features"]) and loaded["names"] == record["names"]
    for protocol in (0, 2):  # text GLOBAL opcodes: the module name can be swapped in place
        old = pickle.dumps(record, protocol=protocol).replace(b"numpy._core", b"numpy.core")
        assert np.array_equal(safe_pickle.loads(old)["features"], record["features"])


# --- item 4: damaged LMDB files ---------------------------------------------------------------------------------
def test_f21_truncated_lmdb_is_named_not_a_bus_error(hmd):
    from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader

    from mmf_pe.utils.lmdb_file import LMDBFileError

    data, size = truncate_half(hmd)
    with pytest.raises(LMDBFileError, match=f"{data} is truncated: {size} bytes"):
        LMDBFeatureReader(8, hmd["features"]).read(f"{hmd['features']}/{ids_of(hmd, 'train')[0]}.npy")


def test_f21_corrupt_lmdb_is_named(hmd):
    from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader

    from mmf_pe.utils.lmdb_file import LMDBFileError

    data = os.path.join(hmd["features"], "data.mdb")
    page = 4096
    with open(data, "r+b") as f:  # every page after the two meta pages becomes garbage
        size = os.path.getsize(data)
        f.seek(2 * page)
        f.write(np.random.default_rng(0).integers(0, 255, size - 2 * page, dtype=np.uint8).tobytes())
    reader = LMDBFeatureReader(8, hmd["features"])
    with pytest.raises(LMDBFileError, match=f"{data}: cannot read the LMDB"):
        reader.read(f"{hmd['features']}/{ids_of(hmd, 'train')[0]}.npy")


def test_f21_missing_id_names_the_lmdb(hmd):
    from mmf.datasets.databases.readers.feature_readers import LMDBFeatureReader

    reader = LMDBFeatureReader(8, hmd["features"])
    with pytest.raises(KeyError) as error:
        reader.read(f"{hmd['features']}/99999.npy")
    assert str(error.value).startswith(f"{hmd['features']} has no features for 99999.npy (key b'99999')")


# --- item 5: pre-flight checks ----------------------------------------------------------------------------------
def _edit_line(path, number, text):
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    lines[number - 1] = text if isinstance(text, bytes) else text.encode()
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))


def _set_field(path, number, **fields):
    with open(path) as f:
        lines = f.read().split("\n")
    lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **fields})
    with open(path, "w") as f:
        f.write("\n".join(lines))


def _without_field(path, number, field):
    with open(path) as f:
        lines = f.read().split("\n")
    record = json.loads(lines[number - 1])
    del record[field]
    lines[number - 1] = json.dumps(record)
    with open(path, "w") as f:
        f.write("\n".join(lines))


@pytest.mark.parametrize("case", ["blank", "encoding", "label_string", "label_2", "no_label_train", "duplicate",
                                  "missing_features", "width", "nan", "truncated", "hostile", "id_path", "id_null",
                                  "id_2_31", "id_float", "text_null", "text_number"])
def test_preflight_names_each_problem(case, hmd, tmp_path):
    from mmf_pe.data.checks import check_dataset

    train = os.path.join(hmd["annotations"], "train.jsonl")
    feature_dim = 32
    if case == "blank":
        _edit_line(train, 3, "   ")
        expected = f"{train}:3: blank line"
    elif case == "encoding":
        _edit_line(train, 4, b'{"id": 1, "text": "caf\xe9"}')
        expected = f"{train}:4: not UTF-8 (byte 0xe9 at column 23)"
    elif case == "label_string":
        _set_field(train, 5, label="1")
        expected = f"{train}:5: label '1' (str) is not one of the integers 0, 1"
    elif case == "label_2":
        _set_field(train, 6, label=2)
        expected = f"{train}:6: label 2 (int) is not one of the integers 0, 1"
    elif case == "no_label_train":
        _without_field(train, 7, "label")
        expected = f"{train}:7: record lacks label"
    elif case == "duplicate":
        with open(train) as f:
            first = json.loads(f.readline())
        _set_field(train, 9, id=first["id"])
        expected = f"id {first['id']!r} at {train}:9 repeats {train}:1"
    elif case == "id_path":
        _set_field(train, 3, id="../../x")
        expected = f"{train}:3: id '../../x' (str) is not an integer (or a string of digits)"
    elif case == "id_null":
        _set_field(train, 4, id=None)
        expected = f"{train}:4: id None (NoneType) is not an integer"
    elif case == "id_2_31":
        _set_field(train, 5, id=2 ** 31)
        expected = f"{train}:5: id 2147483648 does not fit the 32-bit integer MMF stores ids in"
    elif case == "id_float":
        _set_field(train, 6, id=10005.5)
        expected = f"{train}:6: id 10005.5 (float) is not an integer"
    elif case == "text_null":
        _set_field(train, 7, text=None)
        expected = f"{train}:7: text None (NoneType) is not a string"
    elif case == "text_number":
        _set_field(train, 8, text=42)
        expected = f"{train}:8: text 42 (int) is not a string"
    elif case == "missing_features":
        _set_field(train, 2, img="img/77777.png")
        expected = f"1 of 64 ids have no features in {hmd['features']}, e.g. '77777' ({train}:2)"
    elif case == "width":
        feature_dim = 16
        expected = "features of 64 records are not N x 16 (the model's visual_embedding_dim), e.g. '10000' (8, 32)"
    elif case == "nan":
        from mmf_pe.data.lmdb_features import read_record

        key = ids_of(hmd, "train")[0]
        record = read_record(hmd["features"], key)
        record["features"][3, 5] = np.nan
        put_raw(hmd["features"], {key: pickle.dumps(record)})
        expected = f"{hmd['features']}: non-finite (NaN/inf) features in '{key}' (1 values)"
    elif case == "truncated":
        data = os.path.join(hmd["features"], "data.mdb")
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) - 4096)
        expected = f"{data} is truncated"
    else:
        marker = str(tmp_path / "created_by_preflight")
        put_raw(hmd["features"], {ids_of(hmd, "train")[0]: hostile_record(marker)})
        expected = f"{hmd['features']} key '10000': refused to unpickle io.open"
    problems = check_dataset("hateful_memes", hmd_config(hmd), feature_dim=feature_dim)
    assert any(expected in p for p in problems), problems
    assert not os.path.exists(str(tmp_path / "created_by_preflight"))


def test_preflight_errors_stay_short_and_64_bit_ids_pass_where_the_dataset_stores_them(hmd):
    from mmf_pe.data.checks import DataCheckError, check_config_data, check_dataset

    train = os.path.join(hmd["annotations"], "train.jsonl")
    with open(train) as f:
        content = f.read()
    first = content.splitlines()[0]
    with open(train, "w") as f:  # 20,000 more lines repeating line 1's id
        f.write(content.rstrip("\n") + "\n" + "\n".join([first] * 20000) + "\n")
    config = OmegaConf.create({"datasets": "hateful_memes", "model": "m", "model_config": {},
                               "dataset_config": {"hateful_memes": hmd_config(hmd)}})
    with pytest.raises(DataCheckError) as error:
        check_config_data(config)
    message = str(error.value)
    assert message.count("repeats") == 5 and "... and 19995 more repeated ids (20000 lines repeat an earlier id)" \
        in message and len(message) < 5000, message[:3000]

    rows = [json.loads(line) for line in content.splitlines()[:3]]
    for offset, row in enumerate(rows):
        row["id"] = str(2 ** 40 + offset)  # a tweet id: too big for int32, fine for int64
    with open(train, "w") as f:
        f.write("\n".join(json.dumps(row) for row in rows) + "\n")
    dataset = hmd_config(hmd)
    dataset["use_features"] = False
    assert any("does not fit the 32-bit integer" in p for p in check_dataset("hateful_memes", dataset))
    dataset["preflight_id_bits"] = 64
    assert not any(" id " in p for p in check_dataset("hateful_memes", dataset))


def test_preflight_passes_clean_data_warns_on_ids_shared_by_splits_and_test_may_lack_labels(hmd, recwarn):
    from mmf_pe.data.checks import check_dataset

    test = os.path.join(hmd["annotations"], "test_seen.jsonl")
    _without_field(test, 1, "label")
    assert check_dataset("hateful_memes", hmd_config(hmd), feature_dim=32) == []
    assert not recwarn.list
    with open(os.path.join(hmd["annotations"], "train.jsonl")) as f:
        first = json.loads(f.readline())
    _set_field(test, 2, id=first["id"])
    with pytest.warns(UserWarning, match=rf"ids are in both train and test, e.g. '{first['id']}' \({test}:2\)"):
        assert check_dataset("hateful_memes", hmd_config(hmd), feature_dim=32) == []


def test_trainer_runs_the_preflight_before_training(hmd, tmp_path, monkeypatch, mmf_inprocess):
    from mmf_pe.data.checks import DataCheckError

    monkeypatch.setenv("MMF_DATA_DIR", hmd["data_dir"])
    _set_field(os.path.join(hmd["annotations"], "dev_seen.jsonl"), 2, label=2)
    config = write_run_config(tmp_path, "hmd_pe.yaml")
    with pytest.raises(DataCheckError, match=r"dev_seen\.jsonl:2: label 2 \(int\)"):
        mmf_inprocess([f"config={config}", *BASE], tmp_path / "save")
    assert not os.path.exists(tmp_path / "save" / "models")
    # the width the run's model expects comes from its config
    width = "model_config:\n  visual_bert_pe:\n    visual_embedding_dim: 16\n"
    config = write_run_config(tmp_path / "w", "hmd_pe.yaml", width)
    with pytest.raises(DataCheckError, match=r"records are not N x 16 \(the model's visual_embedding_dim\)"):
        mmf_inprocess([f"config={config}", *BASE], tmp_path / "save2")


# --- item 9: extraction stays inside the image root ------------------------------------------------------------
def test_extract_refuses_paths_outside_the_image_root(tmp_path):
    from PIL import Image

    from mmf_pe.extraction import extract_features
    from mmf_pe.extraction.images import discover
    from mmf_pe.extraction.store import read_failures

    root, outside = tmp_path / "hm" / "defaults", tmp_path / "outside"
    (root / "img").mkdir(parents=True)
    (root / "annotations").mkdir()
    outside.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for path in (root / "img" / "good.png", outside / "secret1.png", outside / "secret2.png", outside / "secret3.png"):
        Image.fromarray(pixels).save(path)
    (root / "img" / "link.png").symlink_to(outside / "secret3.png")
    listing = root / "annotations" / "train.jsonl"
    names = ["img/good.png", str(outside / "secret1.png"), "../../outside/secret2.png", "img/link.png"]
    listing.write_text("".join(json.dumps({"id": i, "img": name, "text": "t"}) + "\n" for i, name in enumerate(names)))
    out = str(tmp_path / "features.lmdb")
    summary = extract_features(str(listing), out, allow_random_weights=True, min_size=48, max_size=64, num_boxes=2,
                               detector_options={"rpn_pre_nms_top_n": 20, "rpn_post_nms_top_n": 10}, progress=False,
                               num_workers=0)
    assert summary["written"] == 1 and summary["failed"] == 3
    refused = dict(read_failures(out))
    assert set(refused) == {str(outside / "secret1.png"), str(outside / "secret2.png"), str(root / "img" / "link.png")}
    assert all("outside the image root" in reason and "--allow-outside-root" in reason for reason in refused.values())
    assert len(discover(str(listing), allow_outside_root=True)[0]) == 4


# --- item 10: convert-mmh and a GT entry without tweet_text -------------------------------------------------------
def test_convert_mmh_reports_a_gt_entry_without_tweet_text(tmp_path, capsys):
    from mmf_pe.datasets.mmh import convert
    from mmf_pe.testing.tiny_mmh import make_tiny_mmhs150k

    facts = make_tiny_mmhs150k(str(tmp_path / "src" / "MMHS150K"))
    gt_path = os.path.join(facts["root"], "MMHS150K_GT.json")
    with open(gt_path) as f:
        gt = json.load(f)
    victim = facts["ids"]["train"][1]
    del gt[victim]["tweet_text"]
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    data_dir = str(tmp_path / "data")
    assert convert.main(["--src", str(tmp_path / "src"), "--data-dir", data_dir, "--strict"]) == 1
    root = os.path.join(data_dir, "datasets", "mmh", "defaults")
    with open(os.path.join(root, "skipped.jsonl")) as f:
        skipped = {s["id"]: s for s in map(json.loads, f)}
    assert "no tweet_text" in skipped[victim]["reason"] and "MMHS150K_GT.json" in skipped[victim]["reason"]
    with open(os.path.join(root, "annotations", "train.jsonl")) as f:
        assert victim not in {json.loads(line)["id"] for line in f}
    assert victim in capsys.readouterr().out


# --- item 14: VG detector without a valid proposal ---------------------------------------------------------------
def test_vg_detector_without_a_valid_proposal_uses_a_whole_image_box():
    import torch

    from mmf_pe.extraction.detectors.vg_frcnn import VGFasterRCNN
    from mmf_pe.extraction.selection import SelectionConfig

    detector = VGFasterRCNN(allow_random_weights=True, width=4, min_size=64, max_size=96, rpn_pre_nms_top_n=30,
                            rpn_post_nms_top_n=10)
    with torch.no_grad():  # every proposal moves far off the image: clipped to a zero-area box, none is valid
        deltas = detector.model.proposal_generator.rpn_head.anchor_deltas
        deltas.weight.zero_()
        deltas.bias.copy_(torch.tensor([1000.0, 1000.0, 0.0, 0.0]).repeat(deltas.bias.numel() // 4))
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for method in ("vmb", "vg_demo"):
        [record] = detector.extract([detector.preprocess(rgb)], [(48, 64)],
                                    SelectionConfig(method=method, max_boxes=4, min_boxes=1))
        assert record["_fallback_box"] and record["num_boxes"] == 1
        assert record["features"].shape == (1, detector.feature_dim) and np.isfinite(record["features"]).all()
        assert np.allclose(record["bbox"], [[0, 0, 64, 48]])
