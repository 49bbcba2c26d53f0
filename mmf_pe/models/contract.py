"""The model contract: everything the apps (export-adapter, export-base, evaluate, serve, table1) may know of a model.

A *family* is registered under the MMF model names it serves (`visual_bert_pe`; `frozen_vl` and its `clip_pe` name)
and says, in one place: how to build itself from a run's config, how a checkpoint of it is read, which tensors an
adapter export holds (its trained slots), what `export-base` writes, and, as a `ServedBase`, how a raw request (text
+ image, or text + precomputed features) becomes the batch the model takes, with the run's own processors. The apps
call only this module; no family's key names, sample fields or tokenisation live outside the family's folder
(`tests/test_layers.py` checks the imports). See docs/model-contract.md.

Families are imported lazily (`FAMILY_MODULES`), so this module imports no MMF; a test or a plugin adds one with
`register_family`.
"""
import copy
import hashlib
import importlib
import json
import os
import threading

import torch

from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME, base_fingerprint, save_adapter, trained_state
from mmf_pe.tuners.peft_methods.model import base_key
from mmf_pe.utils.fingerprint import tensor_digests
from mmf_pe.utils.hashing import file_sha256

BASE_FORMAT = "mmf_pe.base/1"
BASE_CONFIG = "base_config.json"
# MMF model name -> the module that registers its family (imported on first use)
FAMILY_MODULES = {"visual_bert_pe": "mmf_pe.models.visual_bert_family", "frozen_vl": "mmf_pe.models.frozen_vl.family",
                  "clip_pe": "mmf_pe.models.frozen_vl.family"}
_FAMILIES = {}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz")


class ContractError(ValueError):
    """A run, checkpoint, base folder or adapter that does not fit its family (the message names file and key)."""


class RequestError(ValueError):
    """A raw request a served base cannot turn into a batch; `field` names the request field, `status` the HTTP code."""

    def __init__(self, message, field=None, status=422):
        super().__init__(message)
        self.field, self.status = field, status


def register_family(family, *names):
    """Make `family` the one for MMF model `names` (default: `family.names`)."""
    for name in names or family.names:
        _FAMILIES[name] = family
    return family


def unregister_family(*names):
    for name in names:
        _FAMILIES.pop(name, None)


def get_family(name):
    """The family of MMF model `name` (imports its module on first use), or a ContractError listing the known ones."""
    name = str(name or "visual_bert_pe")
    if name not in _FAMILIES and name in FAMILY_MODULES:
        importlib.import_module(FAMILY_MODULES[name])
    if name not in _FAMILIES:
        known = sorted(set(FAMILY_MODULES) | set(_FAMILIES))
        raise ContractError(f"model {name!r} has no registered family (mmf_pe.models.contract); known: {known}")
    return _FAMILIES[name]


def family_of_run(config):
    """The family of a run's config (its `model` key; a paper checkpoint's `visual_bert` is read as visual_bert_pe)."""
    name = config.get("model") or "visual_bert_pe"
    return get_family("visual_bert_pe" if name == "visual_bert" else name)


def family_of_model(model):
    """The family of a built model (its registered MMF name, `MODEL_NAME`; VisualBERTPE has none)."""
    return get_family(getattr(model, "MODEL_NAME", None) or "visual_bert_pe")


class Family:
    """The contract a model family fulfils. Subclasses set `names` and implement `build` and `open_base`."""

    names = ()
    served_modes = ("fc", "pe")  # modes whose exports share a frozen base (full trains the base itself)
    reads_region_features = False  # trained on detector region features (an export records their provenance)

    @property
    def name(self):
        return self.names[0]

    # -- runs and checkpoints -----------------------------------------------------------------------------------
    def build(self, run_config):
        """The model a run's config (a plain dict, as MMF saved it) describes; frozen weights as the run had them,
        trained ones to be loaded from its checkpoint."""
        raise NotImplementedError

    def read_run(self, state, config):
        """(state, config) of a checkpoint as this family reads it (e.g. an older naming mapped to the current)."""
        return state, config

    def checkpoint_keys(self, state):
        """The model keys a checkpoint's state holds (evaluate refuses to score a model not wholly loaded)."""
        return {k[len("module."):] if k.startswith("module.") else k for k in state}

    def evaluate_options(self, state, saved_config):
        """Extra MMF options `mmf_pe evaluate` needs to score this checkpoint ([] for a plain one)."""
        return []

    def load_checkpoint(self, model, state, where):
        """Copy a checkpoint's state onto a built model (strict: every key and shape)."""
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ContractError(f"{where}: does not match the model its config describes:\n{error}") from None

    def run_inputs(self, run_config, device="cpu"):
        """Request processing for a run's model offline (no served base), with the run's own processors: an object
        with `prepare(text, image=None, features=None)` and `collate(texts, items)` as a ServedBase has."""
        raise NotImplementedError(f"{self.name}: no offline request processing for its runs")

    def build_default(self, mode, overrides=()):
        """The family's default model for a training mode (random weights; `mmf_pe table1`)."""
        raise NotImplementedError(f"{self.name}: no default model (table1)")

    # -- exports ----------------------------------------------------------------------------------------------------
    def trained_slots(self, model):
        """{name: tensor} an adapter export holds: the parameters that train."""
        return trained_state(model)

    def adapter_extra(self, model, run_config):
        """Keys the family adds to adapter_config.json (what `open_base(...).build_kind` needs besides the base)."""
        return {}

    def export_adapter(self, model, out_dir, run_config, source=None, feature_provenance=None, threshold=None,
                       text_normalization=None):
        extra = dict(self.adapter_extra(model, run_config))
        augment = ((run_config or {}).get("training") or {}).get("augment") or {}
        if augment.get("enabled"):  # adversarial training (training.augment): what the adapter was trained against
            from omegaconf import OmegaConf

            plain = OmegaConf.to_container(augment, resolve=True) if OmegaConf.is_config(augment) else augment
            extra["training_augment"] = copy.deepcopy(dict(plain))
        return save_adapter(model, out_dir, source=source, feature_provenance=feature_provenance,
                            threshold=threshold, model_name=self.name, extra=extra,
                            text_normalization=text_normalization)

    def export_base(self, model, run_config, out_dir, default_adapter=None, **options):
        """Write a served base folder (`base_config.json` + the family's files) from a built model."""
        raise NotImplementedError

    # -- serving ----------------------------------------------------------------------------------------------------
    def open_base(self, directory, config, device="cpu", embedding_cache_bytes=0):
        """A ServedBase over a base folder written by `export_base`."""
        raise NotImplementedError


class ServedBase:
    """One base folder loaded for serving: its frozen tensors (shared by every adapter kind built on it), its
    processors, and how a request becomes the model's batch. Subclasses implement the `# family` methods."""

    takes_images = False    # an uploaded image goes through the family's own processors
    takes_features = False  # precomputed features (e.g. detector regions) are accepted
    uses_detector = False   # images go through the server's region detector first (their provenance must match)
    feature_dim = None

    def __init__(self, family, directory, config, device="cpu"):
        self.family, self.directory, self.config = family, directory, config
        self.name = os.path.basename(os.path.normpath(directory))
        self.device = torch.device(device)
        self.frozen = {}  # base name -> tensor (on `device`)
        self.kinds = {}
        self._lock = threading.Lock()
        self._digests = None

    # family: the frozen tensors under their base names, the kind key / model of an adapter, request -> batch
    def load_tensors(self):
        raise NotImplementedError

    def kind_key(self, adapter_config, tensors, where):
        raise NotImplementedError

    def build_model(self, adapter_config, tensors, where):
        raise NotImplementedError

    def prepare(self, text, image=None, features=None):
        """One request's model input (image: the upload's bytes; features: an (N, D) float32 tensor)."""
        raise NotImplementedError

    def collate(self, texts, items):
        raise NotImplementedError

    def row_stages(self, model):
        """The module paths of `model` the hidden states pass through in order (each encoder layer, then what maps
        the last one to scores), for fan-out to run what lies below the lowest adapter once
        (mmf_pe/tuners/shared_rows.py); None: the family declares none."""
        return None

    def probabilities(self, model, batch):
        scores = model.forward(batch)["scores"]  # forward: MMF's __call__ would add losses
        return torch.softmax(scores.float(), dim=-1)[:, 1]

    # -- shared by every family ---------------------------------------------------------------------------------
    def open(self):
        self.frozen = {k: v.to(self.device) for k, v in self.load_tensors().items()}
        return self

    @property
    def tensor_digests(self):
        if self._digests is None:
            self._digests = tensor_digests(self.frozen)
        return self._digests

    @property
    def fingerprint(self):
        payload = json.dumps(self.tensor_digests, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def describe(self):
        return {"name": self.name, "model": self.family.name, "fingerprint": self.fingerprint,
                "takes_images": self.takes_images, "takes_features": self.takes_features}

    def holds(self, adapter_config):
        """Whether the adapter's frozen tensors (its per-tensor digests) are all this base's."""
        if (adapter_config.get("model") or "visual_bert_pe") not in self.family.names:
            return False
        stored = (adapter_config.get("base_fingerprint") or {}).get("tensors")
        if not isinstance(stored, dict) or not stored:
            return False
        digests = self.tensor_digests
        return all(digests.get(name) == digest for name, digest in stored.items())

    def kind_for(self, adapter_config, tensors, where):
        """The skeleton (a `Kind`) adapters of this layout share, built on first use over the base tensors."""
        mode = adapter_config.get("training_mode")
        if mode not in self.family.served_modes:
            raise ContractError(f"{where}: training_mode {mode!r}; only {' and '.join(self.family.served_modes)} "
                                "exports share a frozen base")
        key = self.kind_key(adapter_config, tensors, where)
        with self._lock:
            kind = self.kinds.get(key)
        if kind is None:  # built, but kept (`keep_kind`) only once the caller accepts the adapter
            kind = self._build_kind(adapter_config, tensors, where)
            kind.key = key
        missing = sorted(set(kind.slots) - set(tensors))
        extra = sorted(set(tensors) - set(kind.slots))
        wrong = [f"{n}: {tuple(t.shape)} vs {tuple(kind.slots[n].shape)}" for n, t in tensors.items()
                 if n in kind.slots and kind.slots[n].shape != t.shape]
        if missing or extra or wrong:
            raise ContractError(f"{where}/{WEIGHTS_NAME}: does not fit the {mode} model: missing {missing[:5]}, "
                                f"unexpected {extra[:5]}, shapes {wrong[:5]}")
        return kind

    def keep_kind(self, kind):
        """Cache `kind` for the adapters of its layout that follow; the one already cached wins a race."""
        with self._lock:
            return self.kinds.setdefault(kind.key, kind)

    def _build_kind(self, adapter_config, tensors, where):
        with torch.random.fork_rng(devices=[]):
            model = self.build_model(adapter_config, tensors, where)
        slots, missing, replaced = {}, [], {}
        for name, parameter in list(model.named_parameters(remove_duplicate=False)):
            if parameter.requires_grad:
                slots[name] = parameter
                continue
            shared = self.frozen.get(base_key(name))
            if shared is None or shared.shape != parameter.shape:
                missing.append(name)
                continue
            if id(parameter) not in replaced:  # tied weights stay one parameter
                replaced[id(parameter)] = torch.nn.Parameter(shared, requires_grad=False)
            module_path, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(module_path), leaf, replaced[id(parameter)])
        if missing:
            raise ContractError(f"{where}: the base {self.directory} lacks or mis-shapes {len(missing)} weights the "
                                f"{adapter_config.get('training_mode')} model needs, e.g. {missing[:5]}")
        model.to(self.device).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        digest = base_fingerprint(model, exclude=set(slots), per_tensor=False)["digest"]
        return Kind(self, model, {n: p for n, p in model.named_parameters() if n in slots}, digest)


class Kind:
    """One model skeleton over a base's shared tensors, for adapters with the same trained-parameter layout."""

    def __init__(self, base, model, slots, digest):
        self.base, self.model, self.slots, self.digest = base, model, slots, digest
        self.key = None  # the base's cache key for this layout (set by `kind_for`)
        self.lock = threading.Lock()
        self.current = None
        self.switches = 0
        # mixed-adapter batches (mmf_pe/serve/mixed.py): the row-batched copy, or why there is none
        self.mixed, self.mixed_refusal, self.mixed_ready = None, None, False
        self.mixed_expand_from = None  # fan-out: the first stage run per row (mmf_pe/tuners/shared_rows.py)

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


# -- base folders -----------------------------------------------------------------------------------------------

def write_manifest(directory):
    """{relative path: sha256} of every file under a base folder (but base_config.json)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            if relative != BASE_CONFIG and not name.startswith("."):
                files[relative] = file_sha256(path)
    return files


def check_manifest(directory, files):
    """Every listed file present with its recorded content, and no unlisted pickle-format file (a foreign file)."""
    for relative, digest in sorted(files.items()):
        path = os.path.join(directory, relative)
        if not os.path.isfile(path):
            raise ContractError(f"{path}: missing (listed in {BASE_CONFIG}); export the base again")
        if file_sha256(path) != digest:
            raise ContractError(f"{path}: not the file {BASE_CONFIG} lists (sha256 differs): a foreign or edited "
                                "file; export the base again")
    for root, _, names in os.walk(directory):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), directory)
            if relative not in files and name.lower().endswith(PICKLE_SUFFIXES):
                raise ContractError(f"{os.path.join(root, name)}: a foreign file (not in {BASE_CONFIG}; pickle-format "
                                    "weights are never read); remove it")


def read_base_config(directory):
    path = os.path.join(directory, BASE_CONFIG)
    if not os.path.isfile(path):
        raise ContractError(f"{path}: missing; a base folder holds {BASE_CONFIG} (see docs/model-contract.md)")
    with open(path, encoding="utf-8") as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as error:
            raise ContractError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(config, dict) or config.get("format") != BASE_FORMAT:
        raise ContractError(f"{path}: format {config.get('format') if isinstance(config, dict) else None!r} is not "
                            f"{BASE_FORMAT!r}")
    return config


def open_base(directory, device="cpu", embedding_cache_bytes=0):
    """A ServedBase of the folder's family (its `model`; visual_bert_pe for folders written before the contract)."""
    config = read_base_config(directory)
    if isinstance(config.get("files"), dict):
        check_manifest(directory, config["files"])
    family = get_family(config.get("model") or "visual_bert_pe")
    return family.open_base(directory, config, device=device, embedding_cache_bytes=embedding_cache_bytes).open()


def read_adapter_files(path, weights=True):
    """(config bytes, weights bytes or None when `weights` is False: the caller maps the file itself)."""
    with open(os.path.join(path, CONFIG_NAME), "rb") as f:
        config_bytes = f.read()
    if not weights:
        if not os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
            raise FileNotFoundError(os.path.join(path, WEIGHTS_NAME))
        return config_bytes, None
    with open(os.path.join(path, WEIGHTS_NAME), "rb") as f:
        weights_bytes = f.read()
    return config_bytes, weights_bytes
