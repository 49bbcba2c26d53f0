"""What `mmf_pe robustness` attacks: a run or export as a scorer (`Detector`), its labelled split, and the model's
image inputs of (attacked) images: region features made by the detector the training features' provenance records
(VisualBERT), or [0, 1] pixels through the run's own image processor (frozen_vl / clip_pe: `PixelDetector`)."""
import os

import torch


class RobustnessError(ValueError):
    pass


class Detector:
    """A model + its request processing through the model contract (`inputs`: a served base, or a family's
    `run_inputs` for a run directory), the run's / the export's text normalisation applied."""

    bounds = None  # region features are unbounded; pixels live in [0, 1]
    pgd_note = ("PGD perturbs the region features, not the pixels: the detector (Faster R-CNN box selection) is not "
                "differentiable end to end")

    def __init__(self, model, inputs, normalization, threshold=0.5):
        self.model, self.inputs = model.eval(), inputs
        self.normalization, self.threshold = normalization, float(threshold)

    def _prepare(self, text, features):
        return self.inputs.prepare(text, features=features)

    def logits(self, texts, features):
        """Scores (B, 2) for texts [str] and features (B, N, D) (differentiable in the features)."""
        from mmf_pe.utils.text_normalization import normalize_text

        items = [self._prepare(normalize_text(t, self.normalization), f) for t, f in zip(texts, features)]
        return self.model.forward(self.inputs.collate(texts, items))["scores"].float()

    def probabilities(self, texts, features, batch_size=32):
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out += torch.softmax(self.logits(texts[i:i + batch_size], features[i:i + batch_size]), -1)[:, 1]\
                    .tolist()
        return out


class PixelDetector(Detector):
    """A frozen_vl / clip_pe model over [0, 1] pixels (B, 3, H, W): normalised as the run's image processor does, the
    encoder differentiable to its input (`FrozenVL.input_gradients`) even when frozen."""

    bounds = (0.0, 1.0)
    pgd_note = ("PGD perturbs the pixels (L-infinity in [0, 1] pixel space, differentiated through the run's image "
                "processor's Normalize and the encoder)")

    def __init__(self, model, inputs, normalization, pixel_space, threshold=0.5):
        super().__init__(model, inputs, normalization, threshold)
        self.pixel_space = pixel_space

    def _prepare(self, text, features):
        return self.inputs.prepare(text, image=self.pixel_space.normalize(features))

    def logits(self, texts, features):
        with self.model.input_gradients():
            return super().logits(texts, features)


# ---- loading ---------------------------------------------------------------------------------------------------

def load_run(run_dir, split):
    """(Detector, annotations path, features LMDB) of a run directory's best checkpoint and its `split`."""
    from omegaconf import OmegaConf

    from mmf_pe.experiments.evaluate import EvaluateError, test_splits
    from mmf_pe.experiments.export import load_run_model
    from mmf_pe.utils.text_normalization import mode_of_run_config

    model, config, family, _ = load_run_model(run_dir, "best")
    dataset = str(config.get("datasets") or "hateful_memes").split(",")[0]
    dataset_config = config["dataset_config"][dataset]
    try:
        annotations = test_splits(OmegaConf.create(config), dataset, [split])[split][0].split(",")[0]
    except EvaluateError as error:
        raise RobustnessError(str(error)) from None
    data_dir = str(dataset_config.get("data_dir", ""))
    inputs = family.run_inputs(config)
    if family.reads_region_features:
        detector = Detector(model, inputs, mode_of_run_config(config))
        data = str((dataset_config.get("features") or {}).get("test")[0]).split(",")[0]
    else:  # frozen_vl / clip_pe: the memes' images through the run's image processor
        detector = PixelDetector(model, inputs, mode_of_run_config(config), pixel_space_of(inputs, run_dir))
        data = str((dataset_config.get("images") or {}).get("test")[0]).split(",")[0]
    return detector, os.path.join(data_dir, annotations), os.path.join(data_dir, data)


def pixel_space_of(inputs, where):
    """The [0, 1] pixels <-> model input map a pixel model's request processing (run inputs / served base) has."""
    from mmf_pe.models.contract import ContractError

    try:
        return inputs.pixel_space
    except ContractError as error:
        raise RobustnessError(f"{where}: {error}") from None


def load_adapter_export(adapter_dir):
    """A Detector over `<served folder>/<name>` (the folder's base + that adapter), as the server scores it."""
    from mmf_pe.serve.engine import Engine

    folder, name = os.path.split(os.path.abspath(adapter_dir).rstrip(os.sep))
    engine = Engine(folder)
    version = engine.read_folder_version(name)
    version.kind.put_on(version)
    if not version.base.family.reads_region_features:
        space = pixel_space_of(version.base, folder)
        return PixelDetector(version.kind.model, version.base, version.text_normalization, space,
                             version.threshold), None
    return Detector(version.kind.model, version.base, version.text_normalization,
                    version.threshold), version.config.get("feature_provenance")


def read_split(annotations, features_lmdb, pixels=None):
    """(texts, labels, features (B, N, D) float32, image paths as written) of a labelled annotations jsonl.
    With `pixels` (an ImagePixels), the third item is the memes' [0, 1] pixels (B, 3, H, W) instead."""
    from mmf_pe.data.lmdb_features import read_record
    from mmf_pe.utils.io import jsonl_records

    texts, labels, features, images = [], [], [], []
    for record, where in jsonl_records(annotations, RobustnessError):
        if record.get("label") not in (0, 1):
            raise RobustnessError(f"{where}: no label (0/1) in this split; attack success needs labelled memes (use "
                                  "dev_seen / test_seen, not an unlabelled test file)")
        key = os.path.splitext(os.path.basename(str(record.get("img") or record["id"])))[0]
        texts.append(str(record.get("text", "")))
        images.append(str(record.get("img") or ""))
        labels.append(int(record["label"]))
        if pixels is not None:
            features.append(pixels(pixels.load(images[-1])))
        else:
            features.append(torch.as_tensor(read_record(features_lmdb, key)["features"]).float())
    if not texts:
        raise RobustnessError(f"{annotations}: no memes")
    if pixels is not None:
        return texts, labels, torch.stack(features), images
    regions = max(f.shape[0] for f in features)
    batch = torch.zeros(len(features), regions, features[0].shape[1])
    for i, f in enumerate(features):
        batch[i, : f.shape[0]] = f
    return texts, labels, batch, images


def padded(features, regions=None):
    regions = regions or max(f.shape[0] for f in features)
    batch = torch.zeros(len(features), regions, features[0].shape[1])
    for i, f in enumerate(features):
        batch[i, : min(regions, f.shape[0])] = f[:regions]
    return batch


def load_image(images_dir, relative):
    from PIL import Image

    path = os.path.join(images_dir, relative)
    if not os.path.isfile(path):
        path = os.path.join(images_dir, os.path.basename(relative))
    if not os.path.isfile(path):
        raise RobustnessError(f"{os.path.join(images_dir, relative)}: image not found (--images names the folder the "
                              "annotations' img paths are relative to)")
    with Image.open(path) as image:
        return image.convert("RGB")


class ImagePixels:
    """[0, 1] pixels (3, H, W) of (attacked) images through the run's image processor up to its Normalize: what a
    PixelDetector scores. The clean inputs are made the same way, so there is no re-extraction row."""

    reextracts = False

    def __init__(self, images_dir, pixel_space):
        self.images_dir, self.pixel_space = images_dir, pixel_space

    def load(self, relative):
        return load_image(self.images_dir, relative)

    def __call__(self, image):
        return self.pixel_space.to_pixels(image)

    def batch(self, inputs, like):
        return torch.stack(inputs)


class ImageFeatures:
    """Region features of (attacked) images, made by the detector the training features' provenance records."""

    reextracts = True

    def __init__(self, images_dir, provenance, weights=None, allow_random_weights=False):
        from argparse import Namespace

        from mmf_pe.serve.cli import detector_options
        from mmf_pe.serve.features import Featurizer

        if provenance is None:
            raise RobustnessError("image attacks need the features' provenance (features written by `mmf_pe "
                                  "extract`); these features do not record one")
        args = Namespace(detector=None, detector_weights=weights, allow_random_weights=allow_random_weights,
                         num_boxes=None, min_boxes=None, selection=None, min_size=None, max_size=None,
                         feature_dtype=None, device="cpu")
        self.featurizer = Featurizer(**detector_options(args, provenance))
        self.images_dir, self.normalisation = images_dir, provenance.get("normalisation")

    def load(self, relative):
        return load_image(self.images_dir, relative)

    def __call__(self, image):
        import numpy as np

        features, _ = self.featurizer(np.asarray(image), normalisation=self.normalisation)
        return features

    def batch(self, features, like):
        return padded(features, like.shape[1])
