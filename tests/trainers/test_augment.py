"""`training.augment` (adversarial training): off by default; when on, the train split's captions and image inputs
really change (text attacks before tokenising, PGD / noise on region features or pixels) for the drawn memes only,
seeded; the run config and the export record it; bad settings are clear errors."""
import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from mmf_pe import PACKAGE_DIR
from mmf_pe.trainers.augment import FIELD, AugmentError, AugmentingTextProcessor, AugmentSettings, InputAttack

AUGMENT = ("training:\n  max_updates: 4\n  augment:\n    enabled: true\n    fraction: 0.6\n"
           "    attacks: [typos, pgd+typos, gaussian_noise]\n    params: {pgd: {epsilon: 0.1, steps: 2}}\n")


def test_augment_is_off_by_default():
    defaults = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "defaults.yaml"))
    assert AugmentSettings(defaults.training.augment).enabled is False
    assert AugmentSettings(None).enabled is False


def test_the_caption_draw_changes_text_and_is_seeded():
    settings = AugmentSettings({"enabled": True, "fraction": 1.0, "attacks": ["leetspeak", "pgd+typos"], "seed": 3})
    processor = AugmentingTextProcessor(lambda item: {"text": item["text"], "input_ids": torch.zeros(2)}, settings)
    captions = [f"look at this lovely family number {i}" for i in range(12)]
    outputs = [processor({"text": c}) for c in captions]
    assert all(o["text"] != c for o, c in zip(outputs, captions))  # every caption attacked at fraction 1
    assert {int(o[FIELD]) for o in outputs} == {0, 1}  # leetspeak: no input attack; pgd+typos: code 1 (pgd)
    assert [o["text"] for o in outputs] == [processor({"text": c})["text"] for c in captions]  # seeded
    off = AugmentingTextProcessor(processor.processor, AugmentSettings({"enabled": True, "fraction": 0.0,
                                                                        "attacks": ["typos"]}))
    assert all(off({"text": c})["text"] == c and int(off({"text": c})[FIELD]) == 0 for c in captions)


class _Tokenizer:
    vocab_size = 7

    def __call__(self, item):
        return {"text": item["text"]}


def test_the_wrapped_processor_pickles_for_dataloader_workers():
    import pickle

    wrapped = AugmentingTextProcessor(_Tokenizer(), AugmentSettings({"enabled": True, "attacks": ["typos"],
                                                                     "fraction": 1.0}))
    copy = pickle.loads(pickle.dumps(wrapped))
    assert copy.vocab_size == 7 and copy({"text": "nice cat"})["text"] == wrapped({"text": "nice cat"})["text"]


def test_bad_augment_settings_are_clear_errors():
    assert AugmentSettings({"enabled": True, "attacks": "[typos, pgd+typos]"}).attacks == ["typos", "pgd+typos"]
    with pytest.raises(AugmentError, match="training.augment.fraction = 1.5 is out of range"):
        AugmentSettings({"enabled": True, "fraction": 1.5, "attacks": ["typos"]})
    with pytest.raises(AugmentError, match="unknown attack 'emoji_bomb'"):
        AugmentSettings({"enabled": True, "attacks": ["emoji_bomb"]})
    with pytest.raises(AugmentError, match="'blur' works on image files, not on a training batch"):
        AugmentSettings({"enabled": True, "attacks": ["blur"]})
    with pytest.raises(AugmentError, match=r"pgd.epsilon = -1 is out of range"):
        AugmentSettings({"enabled": True, "attacks": ["pgd"], "params": {"pgd": {"epsilon": -1}}})
    with pytest.raises(AugmentError, match="name at least one attack"):
        AugmentSettings({"enabled": True})
    with pytest.raises(AugmentError, match="unknown key 'rate'"):
        AugmentSettings({"enabled": True, "attacks": ["typos"], "rate": 0.1})


def test_pixel_attacks_move_only_the_drawn_rows_within_epsilon(vl_hmd):
    from tests.models.frozen_vl.helpers import batch, build

    model = build(vl_hmd, "clip")
    samples = batch(vl_hmd, "clip")
    samples[FIELD] = torch.tensor([1, 0, 2, 0])  # pgd, none, gaussian_noise, none
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    samples.image = ((torch.rand(4, 3, 32, 32) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))
    clean = samples.image.clone()
    processor = {"type": "torchvision_transforms", "params": {"transforms": [
        "ToTensor", {"type": "Normalize", "params": {"mean": mean, "std": std}}]}}
    config = OmegaConf.create({"dataset_config": {"hateful_memes": {"processors": {"image_processor": processor}}}})
    settings = AugmentSettings({"enabled": True, "attacks": ["pgd", "gaussian_noise"],
                                "params": {"pgd": {"epsilon": 8 / 255, "steps": 2}}})
    assert InputAttack(settings, config)(model.train(), samples, update=0) is True
    std = torch.tensor(std).view(3, 1, 1)
    moved = ((samples.image - clean) * std).flatten(1).abs().max(1).values  # in [0, 1] pixel units
    assert moved[0] > 0 and moved[0] <= 8 / 255 + 1e-5  # PGD: inside its ball
    assert moved[2] > 8 / 255  # the noise (variance 0.005)
    assert torch.equal(samples.image[1], clean[1]) and torch.equal(samples.image[3], clean[3])
    assert not any(p.grad is not None for p in model.parameters())  # the attack leaves no parameter gradients
    del samples["image"]
    with pytest.raises(AugmentError, match="perturb the batch's 'image', which this run's batches do not have"):
        InputAttack(settings, config)(model, samples, update=1)


def test_an_augmented_run_changes_its_training_inputs_and_records_it(mmf_data_env, tmp_path, monkeypatch):
    """A real (in-process) visual_bert_pe run: drawn rows' region features and captions change, others do not;
    config.yaml and the exported adapter record training.augment."""
    from mmf_cli.run import run as mmf_run

    import mmf_pe.trainers.augment as augment
    from mmf_pe.experiments.export import export
    from mmf_pe_testing import read_log, write_run_config

    batches, captions = [], []
    attack, process = augment.InputAttack.__call__, augment.AugmentingTextProcessor.__call__

    def spy_attack(self, model, batch, update):
        before = batch["image_feature_0"].clone()
        result = attack(self, model, batch, update)
        batches.append((batch[FIELD].clone(), (batch["image_feature_0"] - before).flatten(1).abs().max(1).values))
        return result

    def spy_process(self, item):
        output = process(self, item)
        captions.append((self.processor(item)["input_ids"], output))  # the clean caption's ids beside the used
        return output

    monkeypatch.setattr(augment.InputAttack, "__call__", spy_attack)
    monkeypatch.setattr(augment.AugmentingTextProcessor, "__call__", spy_process)
    save_dir = tmp_path / "save"
    mmf_run([f"config={write_run_config(tmp_path, 'hmd_pe.yaml', AUGMENT)}", "model=visual_bert_pe",
             "dataset=hateful_memes", f"env.save_dir={save_dir}"])
    assert "training.augment: adversarial training on" in read_log(save_dir)
    codes = torch.cat([c for c, _ in batches])
    moved = torch.cat([m for _, m in batches])
    assert (codes > 0).any() and (codes == 0).any()
    assert bool((moved[codes > 0] > 0).all()) and bool((moved[codes == 0] == 0).all())
    assert bool((moved[codes == 1] <= 0.1 + 1e-5).all())  # PGD rows inside epsilon
    changed = [not torch.equal(clean, out["input_ids"]) for clean, out in captions]
    assert any(changed) and not all(changed)  # drawn captions tokenised after their attack, the others as they are
    saved = OmegaConf.load(save_dir / "config.yaml")
    assert saved.training.augment.enabled is True and list(saved.training.augment.attacks)[1] == "pgd+typos"
    export(str(save_dir), str(tmp_path / "adapter"))
    exported = json.load(open(tmp_path / "adapter" / "adapter_config.json"))
    assert exported["training_augment"]["attacks"] == ["typos", "pgd+typos", "gaussian_noise"]
