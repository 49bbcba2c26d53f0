"""The model side of the server: one set of base tensors, one model skeleton per adapter kind, adapters swapped in.

Adapters of one kind (training mode + PE method settings) share a skeleton whose frozen parameters *are* the base
tensors (no copy: `nn.Parameter` over the same storage); only the slots an adapter trains are the skeleton's own. A
batch puts its adapter's tensors into those slots under the skeleton's lock (`copy_` of a few MB), then runs.
Every load of an adapter makes a new immutable `AdapterVersion`; a request holds the version it started with.
"""
import itertools
import json
import os
import re
import threading
from dataclasses import dataclass, field

import torch

from mmf_pe.serve import layout
from mmf_pe.serve.adapter_checks import AdapterError, check_weights, checked_config
from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME, base_fingerprint
from mmf_pe.utils.text_normalization import check_mode

_versions = itertools.count(1)


@dataclass(eq=False)
class AdapterVersion:
    name: str
    fingerprint: str
    config: dict
    tensors: dict
    kind: "Kind"
    serial: int = field(default_factory=lambda: next(_versions))

    @property
    def threshold(self):
        value = self.config.get("threshold")
        return 0.5 if value is None else float(value)

    @property
    def text_normalization(self):
        """What the export says its run did to captions (`none` for exports made before the key existed)."""
        return self.config.get("text_normalization") or "none"

    @property
    def provenance(self):
        return self.config.get("feature_provenance")

    def describe(self):
        return {"name": self.name, "fingerprint": self.fingerprint, "training_mode": self.config.get("training_mode"),
                "method": (self.config.get("pe") or {}).get("method"), "threshold": self.threshold,
                "num_parameters": self.config.get("num_parameters"),
                "feature_provenance": self.provenance, "accepts_images": self.provenance is not None}


class Kind:
    """One model skeleton over the shared base tensors, for adapters with the same trained-parameter layout."""

    def __init__(self, model, slots, digest):
        self.model, self.slots, self.digest = model, slots, digest
        self.key = None  # the engine's cache key (mode, PE settings, projection)
        self.lock = threading.Lock()
        self.current = None
        self.switches = 0

    def put_on(self, version):
        """Make `version` the skeleton's adapter (call with `lock` held). Copies the adapter's tensors only."""
        if self.current is version:
            return False
        with torch.no_grad():
            for name, tensor in version.tensors.items():
                self.slots[name].copy_(tensor)
        self.current = version
        self.switches += 1
        return True


class Engine:
    """Base weights + tokenizer loaded once from `<folder>/base/`; adapters read from `<folder>/<name>/`."""

    def __init__(self, folder, precision="fp32"):
        from safetensors.torch import load_file
        from transformers import BertTokenizer

        from mmf_pe.utils.precision import check_precision

        self.folder = folder
        self.precision = check_precision(precision, "cpu")  # the engine scores on CPU; fp16 is refused there
        self.config = layout.read_base_config(folder)
        base = os.path.join(folder, layout.BASE_DIR)
        self.base_tensors = load_file(os.path.join(base, layout.BASE_WEIGHTS))
        self.tokenizer = BertTokenizer.from_pretrained(os.path.join(base, "tokenizer"))
        self.max_seq_length = int(self.config.get("max_seq_length", 128))
        self.feature_dim = int(self.config["model_config"].get("visual_embedding_dim", 2048))
        self.kinds = {}
        self._kinds_lock = threading.Lock()

    # ---- adapters ----------------------------------------------------------------------------------------------

    def read_version(self, name, config_bytes, weights_bytes, where):
        """Parse and check an adapter (no unpickling: JSON + safetensors); returns an AdapterVersion."""
        from safetensors.torch import load as load_safetensors

        config = checked_config(config_bytes, where, self.config["model_config"])  # data only: types, sizes bounded
        try:
            check_mode(config.get("text_normalization"), f"{where}/{CONFIG_NAME}: text_normalization")
        except ValueError as error:
            raise AdapterError(str(error)) from None
        try:
            tensors = load_safetensors(weights_bytes)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise AdapterError(f"{where}/{WEIGHTS_NAME}: not a readable safetensors file ({error})") from None
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        check_weights(tensors, where)
        kind = self.kind_for(config, tensors, where)
        expected = (config.get("base_fingerprint") or {}).get("digest")
        if expected != kind.digest:
            raise AdapterError(f"{where}: trained on other base weights (fingerprint {str(expected)[:12]}.., this "
                               f"server's base {kind.digest[:12]}..)")
        with self._kinds_lock:  # a skeleton is kept only once an adapter of its kind is accepted
            kind = self.kinds.setdefault(kind.key, kind)
        return AdapterVersion(name, layout.fingerprint(config_bytes, weights_bytes), config, tensors, kind)

    def read_folder_version(self, name):
        path = os.path.join(self.folder, name)
        with open(os.path.join(path, CONFIG_NAME), "rb") as f:
            config_bytes = f.read()
        with open(os.path.join(path, WEIGHTS_NAME), "rb") as f:
            weights_bytes = f.read()
        return self.read_version(name, config_bytes, weights_bytes, path)

    def kind_for(self, config, tensors, where):
        architecture = config.get("architecture") or {}
        base_model = self.config["model_config"]
        clashes = {k: (v, base_model[k]) for k, v in architecture.items() if k in base_model and base_model[k] != v}
        if clashes:
            text = ", ".join(f"{k}: adapter {a!r} vs base {b!r}" for k, a, b in ((k, *v) for k, v in clashes.items()))
            raise AdapterError(f"{where}: architecture differs from the base: {text}")
        mode = config.get("training_mode")
        if mode not in ("fc", "pe"):
            raise AdapterError(f"{where}: training_mode {mode!r}; only fc and pe exports share a frozen base")
        pe = config.get("pe") if mode == "pe" else None
        projection = any(n.startswith("model.bert.embeddings.projection.") for n in tensors)
        key = json.dumps([mode, pe, projection], sort_keys=True)
        with self._kinds_lock:
            kind = self.kinds.get(key) or self._built_kind(mode, pe, projection, where)
        kind.key = key
        missing = sorted(set(kind.slots) - set(tensors))
        extra = sorted(set(tensors) - set(kind.slots))
        wrong = [f"{n}: {tuple(t.shape)} vs {tuple(kind.slots[n].shape)}" for n, t in tensors.items()
                 if n in kind.slots and kind.slots[n].shape != t.shape]
        if missing or extra or wrong:
            raise AdapterError(f"{where}/{WEIGHTS_NAME}: does not fit the {mode} model: missing {missing[:5]}, "
                               f"unexpected {extra[:5]}, shapes {wrong[:5]}")
        return kind

    def _built_kind(self, mode, pe, projection, where):
        """`_build_kind`, with what the PE method refuses while building (e.g. target modules matching nothing, a
        pattern that is no regex) an AdapterError naming the adapter, never a 500."""
        try:
            return self._build_kind(mode, pe, projection, where)
        except AdapterError:
            raise
        except (ValueError, TypeError, KeyError, re.error) as error:
            raise AdapterError(f"{where}: the {mode} model cannot be built with this adapter's settings: "
                               f"{str(error)[:300]}") from None

    def _build_kind(self, mode, pe, projection, where):
        from omegaconf import OmegaConf

        from mmf_pe.compat import install

        install()
        import mmf.utils.env  # noqa: F401  (registers MMF's components)

        from mmf_pe.models.visual_bert_pe import VisualBERTPE
        from mmf_pe.tools.table1 import model_config
        from mmf_pe.tuners.peft_methods.model import base_key

        config = model_config(mode)
        for key, value in self.config["model_config"].items():
            config[key] = value
        config.bert_model_name = None
        config.training_mode = mode
        config.train_visual_projection = projection
        if pe is not None:
            config.pe = OmegaConf.create(pe)
        with torch.random.fork_rng(devices=[]):
            model = VisualBERTPE(config)
            model.build()
        slots, missing = {}, []
        for name, parameter in list(model.named_parameters(remove_duplicate=False)):
            if parameter.requires_grad:
                slots[name] = parameter
                continue
            shared = self.base_tensors.get(base_key(name))
            if shared is None or shared.shape != parameter.shape:
                missing.append(name)
                continue
            module_path, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(module_path), leaf, torch.nn.Parameter(shared, requires_grad=False))
        if missing:
            raise AdapterError(f"{where}: the base ({layout.BASE_DIR}/{layout.BASE_WEIGHTS}) lacks or mis-shapes "
                               f"{len(missing)} weights the {mode} model needs, e.g. {missing[:5]}")
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        digest = base_fingerprint(model, exclude=set(slots))["digest"]
        return Kind(model, {n: p for n, p in model.named_parameters() if n in slots}, digest)

    # ---- scoring -------------------------------------------------------------------------------------------------

    def encode_text(self, text):
        """MMF's bert_tokenizer processor: [CLS] word pieces [SEP], padded to max_seq_length."""
        tokens = self.tokenizer.tokenize(text)[: self.max_seq_length - 2]
        ids = self.tokenizer.convert_tokens_to_ids(["[CLS]"] + tokens + ["[SEP]"])
        mask = [1] * len(ids)
        padding = self.max_seq_length - len(ids)
        return torch.tensor(ids + [0] * padding), torch.tensor(mask + [0] * padding)

    def score(self, version, texts, features):
        """Hate probabilities for a batch of one adapter: texts [str], features [(N_i, D) float32 tensors]."""
        sample = self.sample_list(texts, features)
        kind = version.kind
        from mmf_pe.utils.precision import autocast

        with kind.lock, torch.inference_mode():
            switched = kind.put_on(version)
            with autocast(self.precision, "cpu"):  # weights stay fp32; matmuls in bf16 with --precision bf16
                scores = kind.model.forward(sample)["scores"]  # forward: MMF's __call__ would add losses
        return torch.softmax(scores.float(), dim=-1)[:, 1].tolist(), switched

    def sample_list(self, texts, features):
        """The model's input batch (MMF SampleList) for texts [str] and features [(N_i, D) tensors], zero-padded;
        also what `mmf_pe adapt` trains on, so training and serving see the same inputs."""
        from mmf.common.sample import Sample, SampleList

        encoded = [self.encode_text(t) for t in texts]
        regions = max(f.shape[0] for f in features)
        visual = torch.zeros(len(features), regions, self.feature_dim)
        for i, f in enumerate(features):
            visual[i, : f.shape[0]] = f
        sample = SampleList()
        sample.input_ids = torch.stack([ids for ids, _ in encoded])
        sample.input_mask = torch.stack([mask for _, mask in encoded])
        sample.segment_ids = torch.zeros_like(sample.input_ids)
        sample.image_feature_0 = visual
        sample.image_info_0 = Sample({"max_features": torch.tensor([f.shape[0] for f in features])})
        for name in ("visual_embeddings_type", "image_text_alignment", "lm_label_ids"):
            sample[name] = None
        return sample
