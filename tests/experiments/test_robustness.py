"""`mmf_pe robustness` on a tiny run and on an exported adapter: attacks really perturb, a fragile tiny model flips
under PGD, normalisation undoes look-alike + zero-width text, outputs are written; bad input is a clear error."""
import csv
import os
import random

import pytest
from PIL import Image

from mmf_pe.utils import attacks as A


def test_every_text_and_image_attack_changes_its_input():
    params = A.resolve(list(A.TEXT_ATTACKS) + list(A.IMAGE_ATTACKS))
    text = "look at this lovely family of people"
    for name in A.TEXT_ATTACKS:
        assert A.attack_text(text, name, params, A.rng_for(0, 0, name)) != text, name
        assert A.attack_text(text, name, params, A.rng_for(0, 0, name)) == \
            A.attack_text(text, name, params, A.rng_for(0, 0, name))  # seeded
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    image.paste((20, 200, 40), (10, 10, 40, 30))
    for name in A.IMAGE_ATTACKS:
        attacked = A.attack_image(image, name, params, random.Random(1))
        assert attacked.size == image.size and attacked.tobytes() != image.tobytes(), name


def test_bad_attack_names_and_parameters_are_clear_errors():
    with pytest.raises(A.AttackError, match="unknown attack 'emoji_bomb'; known: homoglyphs"):
        A.resolve(["emoji_bomb"])
    with pytest.raises(A.AttackError, match=r"gaussian_noise.variance = 2 is out of range \[0.0, 1.0\]"):
        A.resolve(["gaussian_noise"], {"gaussian_noise": {"variance": 2}})
    with pytest.raises(A.AttackError, match="pgd: unknown parameter 'eps'; it takes epsilon, steps, step_size"):
        A.resolve(["pgd"], {"pgd": {"eps": 0.1}})


def test_robustness_on_a_run_directory(tiny_run, tmp_path, monkeypatch, capsys):
    from mmf_pe.experiments.robustness import main

    monkeypatch.setenv("MMF_DATA_DIR", tiny_run["data"]["data_dir"])
    out = str(tmp_path / "out")
    params = tmp_path / "params.yaml"
    params.write_text("pgd: {epsilon: 3.0, steps: 5}\nhomoglyphs: {rate: 1.0}\nzero_width: {rate: 1.0}\n")
    assert main([tiny_run["save_dir"], "--split", "test_seen", "--attacks", "homoglyphs+zero_width", "typos", "pgd",
                 "blur", "--params", str(params), "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "epsilon: 3.0" in printed and "not differentiable end to end" in printed
    rows = {r["attack"]: r for r in csv.DictReader(open(os.path.join(out, "robustness.csv")))}
    assert set(rows) == {"clean", "homoglyphs+zero_width", "typos", "pgd", "blur"}
    assert rows["blur"]["status"].startswith("not run: precomputed features only")
    # normalisation (on in this run) undoes every look-alike and invisible character: nothing flips
    assert float(rows["homoglyphs+zero_width"]["attack_success"]) == 0.0
    assert rows["homoglyphs+zero_width"]["auroc"] == rows["clean"]["auroc"]
    # the same model scored without the defence: the disguised captions now change its scores
    main([tiny_run["save_dir"], "--attacks", "homoglyphs+zero_width", "--params", str(params), "--normalization",
          "none", "--out", str(tmp_path / "off")])
    off = {r["attack"]: r for r in csv.DictReader(open(tmp_path / "off" / "robustness.csv"))}
    assert off["homoglyphs+zero_width"]["auroc"] != off["clean"]["auroc"]
    # the feature PGD changes the scores (a 20-update model scores every meme alike: its AUROC moves off 0.5)
    assert rows["pgd"]["auroc"] != rows["clean"]["auroc"]
    with Image.open(os.path.join(out, "robustness.png")) as image:
        assert image.format == "PNG"
    assert "| pgd |" in open(os.path.join(out, "robustness.md")).read()


def test_robustness_on_an_exported_adapter(tiny_run, tmp_path, monkeypatch):
    """The same run exported (base + PE adapter, as served): same clean numbers; data named on the command line."""
    from mmf_pe.experiments.export import export
    from mmf_pe.experiments.robustness import RobustnessError, robustness
    from mmf_pe.serve.base_export import export_base

    monkeypatch.setenv("MMF_DATA_DIR", tiny_run["data"]["data_dir"])
    folder = str(tmp_path / "served")
    export_base(tiny_run["save_dir"], folder)
    export(tiny_run["save_dir"], os.path.join(folder, "pe"))
    adapter = os.path.join(folder, "pe")
    with pytest.raises(RobustnessError, match="an exported adapter does not record its data; pass --annotations"):
        robustness(adapter, str(tmp_path / "x"), names=["typos"])
    annotations = os.path.join(tiny_run["data"]["root"], "annotations", "test_seen.jsonl")
    kwargs = dict(names=["typos", "homoglyphs+zero_width"], annotations=annotations,
                  features=tiny_run["data"]["features"])
    exported, perturbed, _, text = robustness(adapter, str(tmp_path / "a"), **kwargs)
    from_run, _, _, _ = robustness(tiny_run["save_dir"], str(tmp_path / "b"), **kwargs)
    assert "text_normalization: nfkc_confusables" in text  # the export recorded the run's normalisation
    assert [r["auroc"] for r in exported] == pytest.approx([r["auroc"] for r in from_run], abs=1e-6)
    assert all(t != r["text"] for t, r in zip(perturbed["typos"], tiny_run["records"]))
    # known-fragile: the same adapter with its threshold at its clean score; PGD must flip correct predictions
    from mmf_pe.experiments.robustness_inputs import load_adapter_export, read_split

    detector, _ = load_adapter_export(adapter)
    texts, _, features, _ = read_split(annotations, tiny_run["data"]["features"])
    middle = sorted(detector.probabilities(texts, features))[len(texts) // 2]
    export(tiny_run["save_dir"], os.path.join(folder, "fragile"), threshold=middle)
    rows, _, _, _ = robustness(os.path.join(folder, "fragile"), str(tmp_path / "c"), names=["pgd"],
                               overrides={"pgd": {"epsilon": 3.0, "steps": 5}}, annotations=annotations,
                               features=tiny_run["data"]["features"])
    assert rows[1]["originally_correct"] > 0 and rows[1]["attack_success"] >= 0.5, rows


def test_a_split_without_labels_is_a_clear_error(tiny_run, tmp_path, monkeypatch):
    from mmf_pe.experiments.robustness import RobustnessError, robustness

    monkeypatch.setenv("MMF_DATA_DIR", tiny_run["data"]["data_dir"])
    annotations = tmp_path / "unlabelled.jsonl"
    annotations.write_text('{"id": 10000, "img": "img/10000.png", "text": "a cat"}\n')
    with pytest.raises(RobustnessError, match=r"unlabelled.jsonl:1: no label \(0/1\) in this split"):
        robustness(tiny_run["save_dir"], str(tmp_path / "out"), annotations=str(annotations))
