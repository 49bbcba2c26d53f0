"""`training.augment`: adversarial training with the attacks `mmf_pe robustness` measures (docs/robustness.md).

Off by default. When enabled, each training meme is perturbed with probability `fraction` (the source system
augmented 10 % of its data) by one attack drawn from `attacks` (names as `mmf_pe robustness` takes them, `a+b`
combining): text parts (homoglyphs, zero_width, typos, leetspeak, case) change the raw caption before the train
split's text processor tokenises (and normalises) it; input parts change the model's image input in the batch —
`pgd` (L-infinity PGD against the meme's own label, on the region features of visual_bert_pe, on the [0, 1] pixels of
frozen_vl / clip_pe through the run's Normalize) and `gaussian_noise` (variance in those units). Only the train
split is touched: validation, test and prediction see clean inputs.

Seeded: a caption's draw depends on (`seed`, the epoch, the caption), so a run is reproducible and each epoch draws
again; PGD's random start is seeded by (`seed`, the update). The draw travels from the text processor to the batch
as the sample field `augment_inputs` (which input attack, 0 = none), so `pgd+typos` hits one meme with both.
"""
import logging
import random

import torch

from mmf_pe.utils import attacks as A
from mmf_pe.utils.pgd import linf_pgd

logger = logging.getLogger(__name__)
INPUT_ATTACKS = ("pgd", "gaussian_noise")  # code i + 1 in the `augment_inputs` field
FIELD = "augment_inputs"
KEY = "training.augment"


class AugmentError(ValueError):
    pass


class AugmentSettings:
    """The validated `training.augment` node."""

    def __init__(self, node):
        node = dict(node or {})
        unknown = sorted(set(node) - {"enabled", "fraction", "attacks", "params", "seed"})
        if unknown:
            raise AugmentError(f"{KEY}: unknown key {unknown[0]!r}; it takes enabled, fraction, attacks, params, seed")
        self.enabled = bool(node.get("enabled", False))
        self.fraction = float(node.get("fraction", 0.1))
        if not 0.0 <= self.fraction <= 1.0:
            raise AugmentError(f"{KEY}.fraction = {self.fraction} is out of range [0, 1]")
        attacks = node.get("attacks") or []
        if isinstance(attacks, str):  # a command-line override (`training.augment.attacks=[typos,pgd]`) is a string
            attacks = [a.strip() for a in attacks.strip().strip("[]").split(",") if a.strip()]
        self.attacks = [str(a) for a in attacks]
        self.seed = int(node.get("seed", 0) or 0)
        if self.enabled and not self.attacks:
            raise AugmentError(f"{KEY}.attacks: name at least one attack (e.g. [typos, pgd])")
        allowed = set(A.TEXT_ATTACKS) | set(INPUT_ATTACKS)
        for name in self.attacks:
            for part in A.parts(name):
                if part in A.SINGLE_ATTACKS and part not in allowed:
                    raise AugmentError(f"{KEY}.attacks: {part!r} works on image files, not on a training batch; use "
                                       f"{', '.join(sorted(allowed))}")
            if sum(p in INPUT_ATTACKS for p in A.parts(name)) > 1:
                raise AugmentError(f"{KEY}.attacks: {name!r} combines {' and '.join(INPUT_ATTACKS)}; use one")
        try:
            self.params = A.resolve(self.attacks, dict(node.get("params") or {}))
        except A.AttackError as error:
            raise AugmentError(f"{KEY}: {error}") from None

    def describe(self):
        return (f"{KEY}: adversarial training on, {self.fraction:.0%} of training memes each get one of "
                f"{', '.join(self.attacks)} (seed {self.seed}; parameters {self.params})")

    def draw(self, text, epoch):
        """(attacked caption, input attack code) for one training caption."""
        rng = random.Random(f"{self.seed}:{epoch}:{text}")
        if rng.random() >= self.fraction:
            return text, 0
        name = rng.choice(self.attacks)
        code = next((INPUT_ATTACKS.index(p) + 1 for p in A.parts(name) if p in INPUT_ATTACKS), 0)
        return A.attack_text(text, name, self.params, rng), code


class AugmentingTextProcessor:
    """The train split's text processor with the draw in front of it; adds the `augment_inputs` field."""

    def __init__(self, processor, settings):
        self.processor, self.settings = processor, settings

    def __getattr__(self, name):
        if name in ("processor", "settings"):  # not yet set (e.g. while unpickling in a DataLoader worker)
            raise AttributeError(name)
        return getattr(self.processor, name)

    def __call__(self, item):
        from mmf.common.registry import registry

        if "text" not in item:
            return self.processor(item)
        epoch = registry.get("current_epoch", 0, no_warning=True)
        text, code = self.settings.draw(str(item["text"]), epoch)
        output = dict(self.processor(dict(item, text=text)))
        output[FIELD] = torch.tensor(code, dtype=torch.long)
        return output


def install(trainer, settings):
    """Wrap each training dataset's text processor (the other splits keep theirs)."""
    from torch.utils.data import ConcatDataset

    for loaded in trainer.dataset_loader.train_dataset.datasets:
        # rc10 concatenates each dataset's annotation files (MMFConcatDataset): the processors live on the parts
        for dataset in loaded.datasets if isinstance(loaded, ConcatDataset) else [loaded]:
            if not hasattr(dataset, "text_processor"):
                raise AugmentError(f"{KEY}: the training dataset {dataset.dataset_name!r} has no text processor")
            dataset.text_processor = AugmentingTextProcessor(dataset.text_processor, settings)


class InputAttack:
    """The batch side: PGD / Gaussian noise on the rows whose draw asked for it."""

    def __init__(self, settings, config):
        self.settings, self.config = settings, config

    def _pixel_space(self, dataset_name):
        from mmf_pe.models.frozen_vl.pixels import PixelSpace

        processors = self.config.dataset_config[dataset_name].processors
        from omegaconf import OmegaConf

        return PixelSpace(OmegaConf.to_container(processors.image_processor, resolve=True),
                          f"dataset_config.{dataset_name}.processors.image_processor")

    def __call__(self, model, batch, update):
        """Perturbs `batch` in place; returns whether a pixel input changed (the caller bypasses an embedding
        cache for that forward)."""
        codes = batch.get(FIELD, None)
        if codes is None or not bool((codes > 0).any()):
            return False
        pixels = hasattr(model, "input_gradients")
        key = "image" if pixels else "image_feature_0"
        if batch.get(key, None) is None:
            raise AugmentError(f"{KEY}: {', '.join(INPUT_ATTACKS)} perturb the batch's {key!r}, which this run's "
                               "batches do not have; use text attacks only")
        clean = batch[key]
        device = next(model.parameters()).device
        space = self._pixel_space(batch.dataset_name) if pixels else None
        inputs = space.denormalize(clean.float()) if pixels else clean.float()
        generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + int(update))
        attacked = inputs
        for code, name in enumerate(INPUT_ATTACKS, start=1):
            rows = (codes == code).to(inputs.device)
            if not bool(rows.any()):
                continue
            if name == "gaussian_noise":
                noise = torch.randn(inputs.shape, generator=generator) * self.settings.params[name]["variance"] ** 0.5
                changed = inputs + noise.to(inputs.device)
            else:
                changed = self._pgd(model, batch, key, inputs, rows, space, generator, device)
            if pixels:
                changed = changed.clamp(0, 1)
            attacked = torch.where(rows.view(-1, *[1] * (inputs.dim() - 1)), changed, attacked)
        rows = (codes > 0).to(clean.device).view(-1, *[1] * (clean.dim() - 1))
        attacked = (space.normalize(attacked) if pixels else attacked).to(clean.dtype)
        batch[key] = torch.where(rows, attacked, clean)  # the other rows exactly as loaded
        return pixels

    def _pgd(self, model, batch, key, inputs, rows, space, generator, device):
        p = self.settings.params["pgd"]
        moved = batch.to(device)
        targets = moved.targets[rows.to(device)]

        def loss(x):
            moved[key] = space.normalize(x) if space is not None else x
            scores = model.forward(moved)["scores"].float()
            return torch.nn.functional.cross_entropy(scores[rows.to(device)], targets)

        bounds = (0.0, 1.0) if space is not None else None
        if space is not None:
            with model.input_gradients():
                return linf_pgd(loss, inputs.to(device), p["epsilon"], p["steps"], p["step_size"], generator,
                                bounds).to(inputs.device)
        return linf_pgd(loss, inputs.to(device), p["epsilon"], p["steps"], p["step_size"], generator,
                        bounds).to(inputs.device)


class AugmentMixin:
    """Trainer side: reads `training.augment`, wraps the train split's text processors, attacks the inputs of each
    training batch before its forward pass (never in evaluation: the model is in eval mode there)."""

    augment = None

    def load_datasets(self):
        super().load_datasets()
        settings = AugmentSettings(self.config.training.get("augment", None))
        if settings.enabled:
            install(self, settings)
            self.augment = InputAttack(settings, self.config)
            self.writer.write(settings.describe())

    def _forward_pass(self, batch):
        model = self.model.module if hasattr(self.model, "module") else self.model
        if self.augment is None or not model.training:
            return super()._forward_pass(batch)
        if self.augment(model, batch, self.num_updates):
            with model.input_gradients():  # the changed pixels are not cached embeddings
                return super()._forward_pass(batch)
        return super()._forward_pass(batch)
