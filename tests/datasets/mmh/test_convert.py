"""`mmf_pe convert-mmh` on a generated miniature MMHS150K tree (19-digit ids, OCR files, broken and odd images)."""
import json
import os

import pytest

from mmf_pe import cli
from mmf_pe.datasets.mmh import convert
from mmf_pe.datasets.mmh.text import OCR_SEPARATOR
from tests.datasets.mmh.helpers import read_jsonl

SPLITS = ("train", "val", "test")


def _annotations(root):
    return {split: read_jsonl(os.path.join(root, "annotations", f"{split}.jsonl")) for split in SPLITS}


def test_records_keep_19_digit_ids_text_and_labels(mini_mmh):
    src, records = mini_mmh["src"], _annotations(mini_mmh["root"])
    for split in SPLITS:
        assert [r["id"] for r in records[split]] == src["good_ids"][split]  # split-file order, nothing else lost
        for r in records[split]:
            assert isinstance(r["id"], str) and len(r["id"]) == 19
            assert r["labels"] == src["gt"][r["id"]]["labels"]
            assert r["label"] == int(sum(v != 0 for v in r["labels"]) >= 2) and r["label_rule"] == "two_of_three"
            assert r["text"].startswith("@user look at this & that") and "t.co" not in r["text"]
            assert os.path.isfile(os.path.join(mini_mmh["root"], "images", r["img"]))
    with_ocr = [r for split in SPLITS for r in records[split] if r["ocr_text"]]
    assert with_ocr and all(r["text"].endswith(OCR_SEPARATOR + "WHEN YOU SEE IT lol") for r in with_ocr)
    kept = {r["id"] for split in SPLITS for r in records[split]}
    assert set(mini_mmh["src"]["odd_images"]) <= kept  # CMYK, grayscale, GIF-as-.jpg, 1-pixel strip are usable


def test_every_bad_input_is_skipped_and_reported(mini_mmh):
    src = mini_mmh["src"]
    skipped = {s["id"]: s for s in read_jsonl(os.path.join(mini_mmh["root"], "skipped.jsonl"))}
    expected = {
        src["missing_from_gt"]: "id not in",
        src["bad_labels"]: "annotator label 7 is not one of 0..5",
        src["missing_image"]: "does not exist",
        src["bad_ocr"]: "malformed OCR file",
        **{i: "image" for i in src["broken_images"]},
    }
    assert set(skipped) == set(expected)
    for tweet_id, reason in expected.items():
        assert reason in skipped[tweet_id]["reason"]
    assert skipped[src["missing_from_gt"]]["where"].endswith("val_ids.txt:2")
    assert "MMHS150K_GT.json" in skipped[src["bad_labels"]]["reason"]
    out = mini_mmh["stdout"]
    assert f"skipped {len(expected)} split-file lines" in out and src["missing_from_gt"] in out
    # Each split's size and positive rate under every rule, with the paper's ~74 % pointed out.
    summary = json.load(open(os.path.join(mini_mmh["root"], "conversion.json")))
    val = summary["splits"]["val"]
    assert val["tweets"] == len(src["good_ids"]["val"]) and val["skipped"] == 1
    assert "two_of_three*" in out and "74%" in out
    positives = val["positives"]["two_of_three"]
    assert f"{100.0 * positives['positive'] / positives['answered']:5.1f} %" in out


def test_rerun_is_idempotent(mini_mmh, tmp_path, capsys):
    root = mini_mmh["root"]
    names = ["annotations/train.jsonl", "annotations/val.jsonl", "annotations/test.jsonl", "skipped.jsonl",
             "conversion.json"]
    before = {n: open(os.path.join(root, n), "rb").read() for n in names}
    links = {n: os.readlink(os.path.join(root, "images", n)) for n in os.listdir(os.path.join(root, "images"))}
    assert convert.main(["--src", str(mini_mmh["base"]), "--out", root, "--workers", "1"]) == 0
    assert {n: open(os.path.join(root, n), "rb").read() for n in names} == before
    assert {n: os.readlink(os.path.join(root, "images", n)) for n in os.listdir(os.path.join(root, "images"))} == links


def test_majority_rule_copies_and_strict_via_the_cli(mini_mmh, tmp_path, capsys):
    out = str(tmp_path / "out")
    status = cli.main(["convert-mmh", "--src", mini_mmh["src"]["root"], "--out", out, "--label-rule", "majority",
                       "--copy-images", "--no-verify-images", "--strict", "--urls", "token", "--no-ocr"])
    assert status == 1  # --strict: something was skipped
    records = [r for split in SPLITS for r in _annotations(out)[split]]
    undecided = [r for r in records if r["label"] is None]
    assert undecided and all(r["majority_class"] is None for r in undecided)
    assert all(r["label_rule"] == "majority" and not r["ocr_text"] and " url" in r["text"] for r in records)
    assert all(not os.path.islink(os.path.join(out, "images", r["img"])) for r in records)
    # without decoding, the broken-but-present images are kept (the extractor reports them later)
    assert set(mini_mmh["src"]["broken_images"]) <= {r["id"] for r in records}
    assert "they get label null" in capsys.readouterr().out


def test_malformed_gt_and_wrong_src_name_the_file(tmp_path, capsys):
    (tmp_path / "splits").mkdir()
    (tmp_path / "MMHS150K_GT.json").write_text('{"1114679353714016256": {"labels": [0, 0, 0],\n  oops}')
    assert convert.main(["--src", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'MMHS150K_GT.json'}:2:3: not valid JSON" in capsys.readouterr().err
    assert convert.main(["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "MMHS150K_GT.json not found" in capsys.readouterr().err


@pytest.mark.parametrize("raw, reason", [("12ab", "not a tweet id"), ("99999999999999999999", "64-bit")])
def test_odd_split_lines_are_reported(tmp_path, raw, reason):
    (tmp_path / "splits").mkdir()
    (tmp_path / "MMHS150K_GT.json").write_text("{}")
    for split in SPLITS:
        (tmp_path / "splits" / f"{split}_ids.txt").write_text(raw + "\n" if split == "val" else "")
    converter = convert.Converter(str(tmp_path), str(tmp_path / "out"), log=lambda message: None)
    converter.run()
    assert [(s["id"], s["where"].endswith("val_ids.txt:1")) for s in converter.skipped] == [(raw, True)]
    assert reason in converter.skipped[0]["reason"]


def test_default_output_is_mmf_data_dir_layout(mini_mmh, tmp_path, monkeypatch):
    """Without --out/--data-dir the converter writes where rc10's `env.data_dir` resolves: $MMF_DATA_DIR/..."""
    data_dir = tmp_path / "mmf_data"
    monkeypatch.setenv("MMF_DATA_DIR", str(data_dir))
    assert convert.main(["--src", mini_mmh["src"]["root"], "--workers", "1"]) == 0
    out = data_dir / "datasets" / "mmh" / "defaults"
    assert _annotations(str(out)) == _annotations(mini_mmh["root"])
