"""The synthetic memes: the label rule, the confounder property (per caption, per scene pattern, per factor) and the
HMD layout. No MMF, a few seconds."""
import json
import os
from collections import defaultdict

import pytest
from PIL import Image

from mmf_pe.demo import memes

SPLITS = {"train": 48, "dev_seen": 16, "dev_unseen": 8, "test_seen": 16, "test_unseen": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("memes"))
    paths = memes.make_memes(data_dir, SPLITS, image_size=64, seed=3, progress=False)
    return paths, memes.read_factors(data_dir)


def _labels_by(factors, key):
    groups = defaultdict(list)
    for row in factors:
        groups[(row["split"], row[key])].append(row["label"])
    return groups


def test_label_rule_is_tone_xor_warmth(data):
    _, factors = data
    for row in factors:
        assert row["tone"] == memes.tone(row["tone_word"]) and row["warmth"] == memes.warmth(row["colour"])
        assert row["label"] == row["tone"] ^ row["warmth"]
    assert {memes.label_rule(t, w) for t in (0, 1) for w in (0, 1)} == {0, 1}


@pytest.mark.parametrize("key", ["text", "pattern", "tone_word", "colour", "shape", "tone", "warmth"])
def test_every_caption_scene_and_factor_occurs_with_both_labels_equally(data, key):
    _, factors = data
    groups = _labels_by(factors, key)
    assert groups
    for (split, value), labels in groups.items():
        assert 2 * sum(labels) == len(labels), f"{split}: {key}={value!r} has labels {labels}"


def test_single_modality_lookup_is_at_chance(data):
    _, factors = data
    summary = memes.confounder_summary(factors)
    assert set(summary) == set(SPLITS)
    for split, row in summary.items():
        assert row["memes"] == SPLITS[split] and row["positive_rate"] == 0.5
        assert row["captions_with_both_labels"] == row["captions"]
        assert row["patterns_with_both_labels"] == row["patterns"]
        assert row["caption_lookup_accuracy"] == 0.5 and row["pattern_lookup_accuracy"] == 0.5


def test_unseen_splits_hold_new_nouns_and_shapes(data):
    _, factors = data
    train = [r for r in factors if r["split"] == "train"]
    unseen = [r for r in factors if "unseen" in r["split"]]
    assert {r["shape"] for r in unseen}.isdisjoint({r["shape"] for r in train})
    train_nouns = {r["text"].replace(r["tone_word"], "") for r in train}
    assert all(r["text"].replace(r["tone_word"], "") not in train_nouns for r in unseen)


def test_hmd_layout_annotations_and_images(data):
    paths, factors = data
    by_id = {r["id"]: r for r in factors}
    ids = set()
    for split, size in SPLITS.items():
        with open(os.path.join(paths["annotations"], f"{split}.jsonl")) as f:
            records = [json.loads(line) for line in f]
        assert len(records) == size
        for record in records:
            assert set(record) == {"id", "img", "label", "text"} and isinstance(record["id"], int)
            assert record["img"] == f"img/{record['id']:05d}.png"
            assert (record["label"], record["text"]) == (by_id[record["id"]]["label"], by_id[record["id"]]["text"])
            ids.add(record["id"])
    assert len(ids) == sum(SPLITS.values())
    image = Image.open(os.path.join(paths["images"], "img", "00001.png"))
    assert image.size == (64, 64) and image.mode == "RGB"


def test_pair_images_differ_only_where_drawn(data):
    """Same caption, same pattern, other colour family: different pictures, same size; same scene and the other
    caption: the figure is identical outside the caption band."""
    paths, factors = data
    quad = [r for r in factors if r["quad"] == "train-0"]
    assert len(quad) == 4 and len({r["pattern"] for r in quad}) == 1 and len({r["text"] for r in quad}) == 2
    pixels = {r["id"]: Image.open(os.path.join(paths["images"], "img", f"{r['id']:05d}.png")).tobytes() for r in quad}
    assert len(set(pixels.values())) == 4


def test_rerun_reuses_and_other_settings_are_refused(data):
    paths, _ = data
    image = os.path.join(paths["images"], "img", "00001.png")
    before = os.path.getmtime(image)
    memes.make_memes(paths["data_dir"], SPLITS, image_size=64, seed=3, progress=False)
    assert os.path.getmtime(image) == before
    with pytest.raises(ValueError, match="use another directory"):
        memes.make_memes(paths["data_dir"], SPLITS, image_size=64, seed=4, progress=False)


def test_split_sizes_must_be_whole_quads(tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        memes.make_memes(str(tmp_path), {"train": 6}, progress=False)


def test_new_event_period_is_new_but_follows_the_same_rule(data, tmp_path):
    """The drift rows' second period: every caption template, tone word, noun, figure colour and shape is absent
    from the first period; the label rule and the confounder quads are the same; ids never meet the first period's."""
    from mmf_pe.demo import new_event

    _, first = data
    paths = new_event.make_new_event(str(tmp_path), {"new_train": 16, "new_test": 8}, image_size=64,
                                     progress=False)
    with open(paths["factors"]) as f:
        factors = [json.loads(line) for line in f]
    assert len(factors) == 24 and min(r["id"] for r in factors) == new_event.FIRST_ID
    for key in ("tone_word", "colour", "shape"):
        assert {r[key] for r in factors}.isdisjoint({r[key] for r in first}), key
    assert {r["text"].replace(r["tone_word"], "") for r in factors}.isdisjoint(
        {r["text"].replace(r["tone_word"], "") for r in first})
    for row in factors:
        assert row["label"] == memes.tone(row["tone_word"]) ^ memes.warmth(row["colour"])
    for key in ("text", "pattern", "tone_word", "colour"):
        for value in {r[key] for r in factors}:
            labels = [r["label"] for r in factors if r[key] == value]
            assert 2 * sum(labels) == len(labels), (key, value)
    with open(os.path.join(paths["annotations"], "new_train.jsonl")) as f:
        record = json.loads(f.readline())
    assert record["period"] == "new_event" and os.path.exists(os.path.join(paths["images"], record["img"]))
    with pytest.raises(ValueError, match="use another folder"):
        new_event.make_new_event(str(tmp_path), {"new_train": 16, "new_test": 8}, image_size=64, seed=5,
                                 progress=False)
