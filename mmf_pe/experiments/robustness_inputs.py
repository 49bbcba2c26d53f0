"""What `mmf_pe robustness` attacks: a VisualBERT run or export as a scorer (`Detector`), its labelled split, and
region features of (attacked) images made by the detector the training features' provenance records."""
import json
import os

import torch


class RobustnessError(ValueError):
    pass


class Detector:
    """A VisualBERT-family model + its tokenisation (the run's / the export's text normalisation applied)."""

    def __init__(self, model, tokenizer, max_seq_length, normalization, threshold=0.5):
        self.model, self.tokenizer, self.max_seq_length = model.eval(), tokenizer, int(max_seq_length)
        self.normalization, self.threshold = normalization, float(threshold)

    def encode(self, text):
        from mmf_pe.utils.text_normalization import normalize_text

        tokens = self.tokenizer.tokenize(normalize_text(text, self.normalization))[: self.max_seq_length - 2]
        ids = self.tokenizer.convert_tokens_to_ids(["[CLS]"] + tokens + ["[SEP]"])
        pad = self.max_seq_length - len(ids)
        return torch.tensor(ids + [0] * pad), torch.tensor([1] * len(ids) + [0] * pad)

    def logits(self, texts, features):
        """Scores (B, 2) for texts [str] and features (B, N, D) (differentiable in the features)."""
        from mmf.common.sample import Sample, SampleList

        encoded = [self.encode(t) for t in texts]
        sample = SampleList()
        sample.input_ids = torch.stack([ids for ids, _ in encoded])
        sample.input_mask = torch.stack([mask for _, mask in encoded])
        sample.segment_ids = torch.zeros_like(sample.input_ids)
        sample.image_feature_0 = features
        sample.image_info_0 = Sample({"max_features": torch.full((len(texts),), features.shape[1])})
        for name in ("visual_embeddings_type", "image_text_alignment", "lm_label_ids"):
            sample[name] = None
        return self.model.forward(sample)["scores"].float()

    def probabilities(self, texts, features, batch_size=32):
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out += torch.softmax(self.logits(texts[i:i + batch_size], features[i:i + batch_size]), -1)[:, 1]\
                    .tolist()
        return out


# ---- loading ---------------------------------------------------------------------------------------------------

def _text_params(config):
    for dataset in (config.get("dataset_config") or {}).values():
        params = (((dataset or {}).get("processors") or {}).get("text_processor") or {}).get("params") or {}
        if params:
            return params
    return {}


def load_run(run_dir, split):
    """(Detector, annotations path, features LMDB) of a run directory's best checkpoint and its `split`."""
    from omegaconf import OmegaConf
    from transformers import BertTokenizer

    from mmf_pe.experiments.evaluate import EvaluateError, test_splits
    from mmf_pe.experiments.export import build_from_run_config, find_checkpoint, read_checkpoint
    from mmf_pe.utils.text_normalization import mode_of_run_config

    path = find_checkpoint(run_dir, "best")
    state, config = read_checkpoint(path)
    if (config.get("model") or "visual_bert_pe") != "visual_bert_pe":
        raise RobustnessError(f"{run_dir}: a {config.get('model')!r} run; mmf_pe robustness scores visual_bert_pe runs "
                              "and exports (frozen_vl / clip_pe: not yet)")
    model = build_from_run_config(config)
    model.load_state_dict(state, strict=True)
    params = _text_params(config)
    tokenizer = BertTokenizer.from_pretrained(str((params.get("tokenizer_config") or {}).get("type")))
    detector = Detector(model, tokenizer, params.get("max_seq_length", 128), mode_of_run_config(config))
    dataset = str(config.get("datasets") or "hateful_memes").split(",")[0]
    dataset_config = config["dataset_config"][dataset]
    try:
        annotations = test_splits(OmegaConf.create(config), dataset, [split])[split][0].split(",")[0]
    except EvaluateError as error:
        raise RobustnessError(str(error)) from None
    data_dir = str(dataset_config.get("data_dir", ""))
    features = str((dataset_config.get("features") or {}).get("test")[0]).split(",")[0]
    return detector, os.path.join(data_dir, annotations), os.path.join(data_dir, features)


def load_adapter_export(adapter_dir):
    """A Detector over `<served folder>/<name>` (the folder's base + that adapter), as the server scores it."""
    from mmf_pe.serve.engine import Engine

    folder, name = os.path.split(os.path.abspath(adapter_dir).rstrip(os.sep))
    engine = Engine(folder)
    version = engine.read_folder_version(name)
    version.kind.put_on(version)
    return Detector(version.kind.model, engine.tokenizer, engine.max_seq_length, version.text_normalization,
                    version.threshold), version.config.get("feature_provenance")


def read_split(annotations, features_lmdb):
    """(texts, labels, features (B, N, D) float32, image paths as written) of a labelled annotations jsonl."""
    from mmf_pe.data.lmdb_features import read_record

    texts, labels, features, images = [], [], [], []
    with open(annotations, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RobustnessError(f"{annotations}:{number}: not valid JSON ({error.msg})") from None
            if record.get("label") not in (0, 1):
                raise RobustnessError(f"{annotations}:{number}: no label (0/1) in this split; attack success needs "
                                      "labelled memes (use dev_seen / test_seen, not an unlabelled test file)")
            key = os.path.splitext(os.path.basename(str(record.get("img") or record["id"])))[0]
            texts.append(str(record.get("text", "")))
            images.append(str(record.get("img") or ""))
            labels.append(int(record["label"]))
            features.append(torch.as_tensor(read_record(features_lmdb, key)["features"]).float())
    if not texts:
        raise RobustnessError(f"{annotations}: no memes")
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


class ImageFeatures:
    """Region features of (attacked) images, made by the detector the training features' provenance records."""

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
        from PIL import Image

        path = os.path.join(self.images_dir, relative)
        if not os.path.isfile(path):
            path = os.path.join(self.images_dir, os.path.basename(relative))
        if not os.path.isfile(path):
            raise RobustnessError(f"{os.path.join(self.images_dir, relative)}: image not found (--images names the "
                                  "folder the annotations' img paths are relative to)")
        with Image.open(path) as image:
            return image.convert("RGB")

    def __call__(self, image):
        import numpy as np

        features, _ = self.featurizer(np.asarray(image), normalisation=self.normalisation)
        return features
