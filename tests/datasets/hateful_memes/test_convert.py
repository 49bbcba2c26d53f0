"""`mmf_pe convert-hm` and rc10's `mmf_convert_hm` (F17) on Hateful Memes files in every published layout."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest

from mmf_pe import REPO_ROOT, cli
from mmf_pe.datasets.hateful_memes import convert
from tests.datasets.hateful_memes.helpers import (
    PASSWORD,
    PHASE_1,
    PHASE_2,
    phase2_zip,
    sha256,
    write_release,
    zip_release,
)


def _base(data_dir):
    return os.path.join(data_dir, "datasets", "hateful_memes", "defaults")


def _snapshot(root):
    """{relative path: bytes} of every file under root (conversion.json aside)."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if name != "conversion.json":
                files[os.path.relpath(path, root)] = open(path, "rb").read()
    return files


def _assert_converted(data_dir, source_root, splits=PHASE_2, data_folder="data", images_folder=None):
    """Every split's jsonl is the source's, byte for byte; every image named in them is the source's image."""
    base = _base(data_dir)
    images_folder = images_folder or os.path.join(source_root, data_folder)
    for split in splits:
        converted = open(os.path.join(base, "annotations", f"{split}.jsonl"), "rb").read()
        assert converted == open(os.path.join(source_root, data_folder, f"{split}.jsonl"), "rb").read()
        for line in converted.decode().splitlines():
            image = json.loads(line)["img"]
            assert open(os.path.join(base, "images", image), "rb").read() == \
                open(os.path.join(images_folder, image), "rb").read()
    summary = json.load(open(os.path.join(base, "conversion.json")))
    assert summary["splits"] == dict(splits)
    return summary


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """One Phase-2 release folder and its password zip (built once: `zip` runs per module, not per test)."""
    root = tmp_path_factory.mktemp("hm_release")
    folder = os.path.join(root, "release")
    write_release(folder)
    zip_path = zip_release(folder, os.path.join(root, "hateful_memes.zip"))
    return {"folder": folder, "zip": zip_path, "sha256": sha256(zip_path)}


def test_phase2_zip_converts_to_mmf_layout_leaves_zip_and_is_idempotent(release, tmp_path, monkeypatch):
    data_dir = str(tmp_path / "data")
    before = (sha256(release["zip"]), os.stat(release["zip"]).st_mtime_ns)
    monkeypatch.setenv(convert.CHECKSUMS_ENV, release["sha256"])
    assert cli.main(["convert-hm", "--src", release["zip"], "--password", PASSWORD, "--data-dir", data_dir]) == 0
    summary = _assert_converted(data_dir, release["folder"])
    assert summary["phase"] == 2 and summary["sha256"] == release["sha256"] and summary["images_written"] == 14
    assert (sha256(release["zip"]), os.stat(release["zip"]).st_mtime_ns) == before  # read only, still there
    assert sorted(os.listdir(os.path.dirname(release["zip"]))) == ["hateful_memes.zip", "release"]
    first = _snapshot(_base(data_dir))
    assert convert.convert(release["zip"], data_dir, PASSWORD)["images_written"] == 0
    assert _snapshot(_base(data_dir)) == first  # idempotent, nothing left behind (no staging or temporary files)


def test_hmd_configs_find_all_five_phase2_splits(release, tmp_path, monkeypatch):
    data_dir = str(tmp_path / "data")
    monkeypatch.setenv("MMF_DATA_DIR", data_dir)
    convert.convert(release["folder"], password=None)  # default data dir: $MMF_DATA_DIR, as MMF resolves it
    from mmf.utils.configuration import Configuration

    args = argparse.Namespace(opts=["config=projects/visual_bert_pe/hmd_pe.yaml", "model=visual_bert_pe",
                                    "dataset=hateful_memes"], config_override=None)
    config = Configuration(args).get_config()
    dataset = config.dataset_config.hateful_memes
    named = [path for split in ("train", "val", "test") for path in dataset.annotations[split]]
    test_dir = os.path.dirname(dataset.annotations.test[0])
    named += [os.path.join(test_dir, name) for name in dataset.test_splits.values()]
    named.append(dataset.annotations.val[0].replace("dev_seen", "dev_unseen"))  # hmd_base.yaml's documented switch
    found = {os.path.basename(p) for p in named if os.path.isfile(os.path.join(dataset.data_dir, p))}
    assert found == {f"{split}.jsonl" for split in PHASE_2}
    image_dir = os.path.join(dataset.data_dir, dataset.images.train[0])
    assert os.path.isfile(os.path.join(image_dir, "img", "10000.png"))


@pytest.mark.parametrize("layout", ["data", "flat", "img_beside_data"])
def test_extracted_folders(layout, tmp_path):
    source = str(tmp_path / "copy")
    write_release(source, data_folder=layout != "flat", images_beside_data=layout == "img_beside_data")
    data_dir = str(tmp_path / "data")
    before = _snapshot(source)
    summary = convert.convert(source, data_dir)
    _assert_converted(data_dir, source, data_folder="." if layout == "flat" else "data",
                      images_folder=source if layout == "img_beside_data" else None)
    assert summary["phase"] == 2 and summary["sha256"] is None
    assert _snapshot(source) == before


def test_unknown_checksum_names_the_bypass_and_the_bypass_works(release, tmp_path, monkeypatch):
    monkeypatch.delenv(convert.CHECKSUMS_ENV, raising=False)  # the published list: our test zip is not on it
    data_dir = str(tmp_path / "data")
    with pytest.raises(convert.ConversionError, match="--bypass-checksum") as error:
        convert.convert(release["zip"], data_dir, PASSWORD)
    assert release["sha256"] in str(error.value)
    assert not os.path.exists(data_dir)
    assert convert.convert(release["zip"], data_dir, PASSWORD, bypass_checksum=True)["phase"] == 2


def test_password_errors(release, tmp_path):
    for password, message in (("wrong", "wrong password"), (None, "password-protected: pass --password")):
        with pytest.raises(convert.ConversionError, match=message):
            convert.convert(release["zip"], str(tmp_path / "data"), password, checksums=[release["sha256"]])
    assert not os.path.exists(os.path.join(_base(str(tmp_path / "data")), "annotations"))


def test_converts_without_the_unzip_binary(release, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("unzip") is None
    data_dir = str(tmp_path / "data")
    convert.convert(release["zip"], data_dir, PASSWORD, checksums=[release["sha256"]])
    _assert_converted(data_dir, release["folder"])


def test_phase1_zip_converts_as_rc10_did_with_a_note(tmp_path, capsys):
    folder = str(tmp_path / "phase1")
    write_release(folder, splits=PHASE_1)
    zip_path = zip_release(folder, str(tmp_path / "phase1.zip"))
    data_dir = str(tmp_path / "data")
    summary = convert.convert(zip_path, data_dir, PASSWORD, checksums=[sha256(zip_path)])
    assert summary["phase"] == 1
    _assert_converted(data_dir, folder, splits=PHASE_1)
    assert "Phase-2 splits" in capsys.readouterr().out


def test_bad_line_and_missing_image_are_named_and_nothing_is_written(tmp_path):
    source = str(tmp_path / "copy")
    write_release(source)
    with open(os.path.join(source, "data", "dev_seen.jsonl"), "a") as f:
        f.write("{not json\n")
    with pytest.raises(convert.ConversionError, match=r"dev_seen.jsonl:3: not JSON"):
        convert.convert(source, str(tmp_path / "data"))
    write_release(source)  # repaired
    with open(os.path.join(source, "data", "train.jsonl"), "ab") as f:
        f.write(b'{"id": 1, "img": "img/1.png", "text": "caf\xe9"}\n')  # latin-1, not UTF-8
    with pytest.raises(convert.ConversionError, match=r"train.jsonl:\d+: not UTF-8"):
        convert.convert(source, str(tmp_path / "data"))
    write_release(source)  # repaired
    os.unlink(os.path.join(source, "data", "img", "10007.png"))
    with pytest.raises(convert.ConversionError, match=r"1 image\(s\).*dev_seen.jsonl:2 img/10007.png"):
        convert.convert(source, str(tmp_path / "data"))
    assert not os.path.exists(os.path.join(_base(str(tmp_path / "data")), "annotations"))


def _mmf_convert_hm(args, env):
    tool = os.path.join(os.path.dirname(sys.executable), "mmf_convert_hm")
    return subprocess.run([tool] + args, env=dict(os.environ, **env), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300, cwd=REPO_ROOT)


def test_f17_mmf_convert_hm_phase2_zip(tmp_path, monkeypatch, capsys):
    zip_path = phase2_zip(str(tmp_path))
    data_dir = str(tmp_path / "data")
    args = ["--zip_file", zip_path, "--password", PASSWORD, "--mmf_data_folder", data_dir, "--bypass_checksum", "1"]
    # rc10 (its Phase-1 checksums already fail on this zip): Phase-1 files only, and the user's zip moved away
    without = _mmf_convert_hm(args, {"MMF_PE_COMPAT_SKIP": "F17"})
    assert without.returncode != 0 and "dev.jsonl doesn't exist" in without.stdout, without.stdout
    assert not os.path.exists(zip_path)

    zip_path = phase2_zip(str(tmp_path))
    shutil.rmtree(data_dir)
    monkeypatch.setenv(convert.CHECKSUMS_ENV, sha256(zip_path))
    monkeypatch.setattr(sys, "argv", ["mmf_convert_hm", "--zip_file", zip_path, "--password", PASSWORD,
                                      "--mmf_data_folder", data_dir, "--move", "1"])
    from mmf_cli.hm_convert import main  # what the mmf_convert_hm console script calls (the layer is active here)

    main()
    assert "--move ignored" in capsys.readouterr().out and os.path.isfile(zip_path)
    summary = json.load(open(os.path.join(_base(data_dir), "conversion.json")))
    assert summary["phase"] == 2 and summary["splits"] == PHASE_2
    assert sorted(os.listdir(os.path.join(_base(data_dir), "annotations"))) == sorted(f"{s}.jsonl" for s in PHASE_2)
    monkeypatch.setattr(sys, "argv", ["mmf_convert_hm", "--zip_file", zip_path, "--password", "nope"])
    with pytest.raises(SystemExit, match="wrong password"):
        main()
