"""White-box PGD on the pixels of frozen_vl models: `mmf_pe robustness` on a tiny CLIP run and its export (every
attack row, PGD + text), the perturbation stays in its L-infinity ball and in [0, 1], a fragile tiny model flips."""
import csv
import os

import pytest
import torch

from mmf_pe.utils.pgd import linf_pgd


def test_linf_pgd_moves_inside_its_ball_and_bounds():
    inputs = torch.rand(4, 3, 8, 8)
    weights = torch.randn(3 * 8 * 8)

    def loss(x):
        return (x.flatten(1) @ weights).sum()

    adversarial = linf_pgd(loss, inputs, 8 / 255, 5, generator=torch.Generator().manual_seed(0), bounds=(0, 1))
    assert not torch.equal(adversarial, inputs)
    assert (adversarial - inputs).abs().max() <= 8 / 255 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert loss(adversarial) > loss(inputs)  # it climbed the loss
    again = linf_pgd(loss, inputs, 8 / 255, 5, generator=torch.Generator().manual_seed(0), bounds=(0, 1))
    assert torch.equal(adversarial, again)  # seeded
    with pytest.raises(ValueError, match="epsilon >= 0 and steps >= 1"):
        linf_pgd(loss, inputs, 0.1, 0)


def test_pixel_attacks_on_a_frozen_vl_run(tiny_vl_run, tmp_path, monkeypatch, capsys):
    from mmf_pe.experiments.robustness import main

    monkeypatch.setenv("MMF_DATA_DIR", tiny_vl_run["data"]["data_dir"])
    out = str(tmp_path / "out")
    params = tmp_path / "params.yaml"
    params.write_text("pgd: {epsilon: 0.2, steps: 5}\ntypos: {rate: 0.5}\n")
    assert main([tiny_vl_run["save_dir"], "--attacks", "typos", "gaussian_noise", "pgd", "pgd+typos",
                 "--params", str(params), "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "PGD perturbs the pixels" in printed and "not differentiable end to end" not in printed
    rows = {r["attack"]: r for r in csv.DictReader(open(os.path.join(out, "robustness.csv")))}
    assert set(rows) == {"clean", "typos", "gaussian_noise", "pgd", "pgd+typos"}  # images read: every row runs
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["pgd"]["auroc"] != rows["clean"]["auroc"]  # the pixel PGD changed the scores


def test_pixel_pgd_on_an_exported_adapter_flips_a_fragile_model(tiny_vl_run, tmp_path, monkeypatch):
    from mmf_pe.experiments.export import export
    from mmf_pe.experiments.robustness import RobustnessError, robustness
    from mmf_pe.experiments.robustness_inputs import ImagePixels, load_adapter_export, read_split
    from mmf_pe.serve.base_export import export_base

    monkeypatch.setenv("MMF_DATA_DIR", tiny_vl_run["data"]["data_dir"])
    folder = str(tmp_path / "served")
    export_base(tiny_vl_run["save_dir"], folder)
    export(tiny_vl_run["save_dir"], os.path.join(folder, "fc"))
    with pytest.raises(RobustnessError, match="pass --annotations <labelled jsonl> and --images"):
        robustness(os.path.join(folder, "fc"), str(tmp_path / "x"), names=["pgd"])
    kwargs = dict(names=["pgd", "typos"], annotations=tiny_vl_run["annotations"], images=tiny_vl_run["images"])
    exported, _, _, _ = robustness(os.path.join(folder, "fc"), str(tmp_path / "a"), **kwargs)
    from_run, _, _, _ = robustness(tiny_vl_run["save_dir"], str(tmp_path / "b"), **kwargs)
    assert [r["auroc"] for r in exported] == pytest.approx([r["auroc"] for r in from_run], abs=1e-6)
    # the PGD inputs differ from the clean pixels, within 8/255 and [0, 1]
    from mmf_pe.experiments.robustness import pgd

    detector, _ = load_adapter_export(os.path.join(folder, "fc"))
    texts, labels, pixels, _ = read_split(tiny_vl_run["annotations"], None,
                                          ImagePixels(tiny_vl_run["images"], detector.pixel_space))
    attacked = pgd(detector, texts, labels, pixels, 8 / 255, 3, bounds=detector.bounds)
    assert not torch.equal(attacked, pixels) and (attacked - pixels).abs().max() <= 8 / 255 + 1e-6
    assert 0 <= attacked.min() and attacked.max() <= 1
    # known-fragile: the threshold at the median clean score; pixel PGD (8/255) must flip correct predictions
    middle = sorted(detector.probabilities(texts, pixels))[len(texts) // 2]
    export(tiny_vl_run["save_dir"], os.path.join(folder, "fragile"), threshold=middle)
    rows, _, _, _ = robustness(os.path.join(folder, "fragile"), str(tmp_path / "c"), names=["pgd"],
                               overrides={"pgd": {"epsilon": 8 / 255, "steps": 5}},
                               annotations=tiny_vl_run["annotations"], images=tiny_vl_run["images"])
    assert rows[1]["originally_correct"] > 0 and rows[1]["attack_success"] >= 0.5, rows


def test_an_image_processor_pixel_attacks_cannot_use_is_a_clear_error():
    from mmf_pe.models.frozen_vl.pixels import PixelSpace, PixelSpaceError

    with pytest.raises(PixelSpaceError, match="after ToTensor only one Normalize may follow"):
        PixelSpace({"type": "torchvision_transforms", "params": {"transforms": [
            "ToTensor", {"type": "Normalize", "params": {"mean": [0.5] * 3, "std": [0.5] * 3}}, "RandomErasing"]}})
    with pytest.raises(PixelSpaceError, match="no ToTensor in its transforms"):
        PixelSpace({"type": "torchvision_transforms", "params": {"transforms": [{"type": "Resize", "params": {}}]}})
    space = PixelSpace({"type": "torchvision_transforms", "params": {"transforms": [
        "ToTensor", {"type": "Normalize", "params": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4]}}]}})
    pixels = torch.rand(2, 3, 4, 4)
    assert torch.allclose(space.denormalize(space.normalize(pixels)), pixels, atol=1e-6)
