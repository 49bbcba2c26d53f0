"""What a pretrained file put into a model (loaded / not loaded / unused keys); a stop when encoder weights are missing.

Files as their publishers ship them: a Hugging Face BERT directory (`model.safetensors`, else `pytorch_model.bin`;
`bert.*` + `cls.*` heads; TF-era `LayerNorm.gamma/beta`) and MMF's zoo `model.pth` (a bare state dict or
`{"model": ...}`). Read without unrestricted unpickling: safetensors, or `torch.load(weights_only=True)`; a zoo file
that also pickles its OmegaConf config is read with exactly those classes allowed, and only when its sha256 is the one
`mmf_pe download` recorded after verifying the published archive (`load_checkpoint`).
A run whose encoder weights are not all in the file stops naming them, unless
`model_config.<model>.allow_missing_weights=true` says random weights are intended.
"""
import os
import pickle

import torch

from mmf_pe.utils.download import recorded_digest
from mmf_pe.utils.hashing import file_sha256

BERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# New in VisualBERT, never in a text BERT checkpoint: the visual projection and the visual embeddings (the latter are
# copied from the text ones by `initialize_visual_from_pretrained`).
VISUAL_ONLY = ("embeddings.projection.", "embeddings.token_type_embeddings_visual.",
               "embeddings.position_embeddings_visual.")
LEGACY_SUFFIXES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}


class MissingWeightsError(RuntimeError):
    pass


def _checkpoint_globals():
    """The exact classes an MMF checkpoint pickles besides tensors: its OmegaConf config (DictConfig / ListConfig with
    their metadata and value nodes, and the builtins / typing names that metadata refers to)."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig, base, nodes

    return [DictConfig, ListConfig, base.ContainerMetadata, base.Metadata, nodes.AnyNode, nodes.StringNode,
            nodes.IntegerNode, nodes.FloatNode, nodes.BooleanNode, typing.Any, collections.defaultdict, dict, list,
            int, float, str, bool]


def load_checkpoint(path, map_location="cpu"):
    """`torch.load(weights_only=True)`; a file that also holds pickled OmegaConf objects (MMF's 2020 zoo checkpoints
    may) is read with exactly those classes allowed, and only when its sha256 is the one `mmf_pe download` recorded
    after verifying the published archive it came from. Never an unrestricted unpickling."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            names = []
        recorded = recorded_digest(path)
        if recorded is None or file_sha256(path) != recorded:
            why = ("its sha256 is not the one `mmf_pe download` recorded for it" if recorded else
                   "it was not fetched by `mmf_pe download` (which verifies the published archive and records the "
                   "file's sha256)")
            raise ValueError(f"{path}: holds pickled objects besides tensors ({', '.join(names) or first}); they are "
                             f"read only from a verified download, and {why}. Fetch it with `mmf_pe download <key>`, "
                             "or re-save it as plain tensors") from error
        allowed = _checkpoint_globals()
        known = {f"{getattr(c, '__module__', 'typing')}.{getattr(c, '__qualname__', getattr(c, '_name', c))}"
                 for c in allowed}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"{path}: verified, but it pickles classes outside the allow-list: {', '.join(unknown)}"
                             ) from error
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)


def read_state_dict(path):
    """A checkpoint's tensors: safetensors or `load_checkpoint` (weights_only); `{"model": ...}` is unwrapped."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = load_checkpoint(path)
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True) ({error}); "
                         "only plain tensor checkpoints are accepted") from error
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (or {{'model': state dict}}), got {type(state).__name__}")
    return state


def bert_weights_file(bert_dir):
    """The file transformers loads from a BERT directory (safetensors first)."""
    for name in BERT_WEIGHT_FILES:
        if os.path.isfile(os.path.join(bert_dir, name)):
            return os.path.join(bert_dir, name)
    raise FileNotFoundError(f"{bert_dir}: none of {', '.join(BERT_WEIGHT_FILES)} found")


def modern_key(key):
    for old, new in LEGACY_SUFFIXES.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


class LoadReport:
    def __init__(self, source, loaded, missing, unused):
        self.source, self.loaded, self.missing, self.unused = source, sorted(loaded), sorted(missing), sorted(unused)

    def summary(self):
        unused = f", unused from the file: {len(self.unused)} ({_sample(self.unused)})" if self.unused else ""
        missing = f", NOT loaded: {len(self.missing)} ({_sample(self.missing)})" if self.missing else ""
        return f"{self.source}: loaded {len(self.loaded)} tensors{missing}{unused}"

    def enforce(self, allow_missing, setting):
        if self.missing and not allow_missing:
            raise MissingWeightsError(
                f"{self.source}: {len(self.missing)} encoder weight(s) are not in the file and would stay random: "
                f"{', '.join(self.missing)}. Use the right file, or set {setting}=true to train them from random "
                "initialisation on purpose.")


def _sample(keys, count=4):
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")


def bert_report(bert_module, bert_dir, ignore=()):
    """Which of `bert_module`'s tensors the BERT directory's weights file provides (names as transformers maps them:
    `bert.` prefix dropped, gamma/beta renamed); `ignore` = parameter names that are new on purpose (PE methods)."""
    path = bert_weights_file(bert_dir)
    file_keys = {}
    for key, value in read_state_dict(path).items():
        name = modern_key(key)
        file_keys[name[len("bert."):] if name.startswith("bert.") else name] = (key, tuple(value.shape))
    own = {k: tuple(v.shape) for k, v in bert_module.state_dict().items()}
    expected = {k for k in own if not k.startswith(VISUAL_ONLY) and k not in set(ignore)}
    loaded = {k for k in expected if k in file_keys and file_keys[k][1] == own[k]}
    unused = {file_keys[k][0] for k in file_keys if k not in own or file_keys[k][1] != own[k]}
    return LoadReport(path, loaded, expected - loaded, unused)


def copy_pretrained(model, state, mapping, write=print, new_keys=(), source="checkpoint"):
    """rc10's `Checkpoint._load_pretrained` matching (a model key containing `<target>.` takes the file key, after the
    model's `format_state_key`, containing `<origin>.` with the same remainder), indexed instead of N x M, with a
    report: model keys under the targets that the file did not provide (except `new_keys`), file keys not used."""
    own_state = model.state_dict()
    format_key = getattr(model, "format_state_key", None)
    copied, used = set(), set()
    for target, origin in mapping.items():
        target, origin = f"{target}.", f"{origin}."
        by_remainder = {}
        for own in own_state:
            if target in own:
                by_remainder.setdefault(own.replace(target, ""), []).append(own)
        for key, value in state.items():
            formatted = format_key(key) if format_key else key
            if origin not in formatted:
                continue
            for own in by_remainder.get(formatted.replace(origin, ""), ()):
                if tuple(own_state[own].shape) != tuple(value.shape):
                    raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, the model's {own} "
                                     f"{tuple(own_state[own].shape)}: a checkpoint of another architecture")
                write(f"Copying {own} from {key}")
                own_state[own].copy_(value)
                copied.add(own)
                used.add(key)
    targets = tuple(f"{target}." for target in mapping)
    expected = {own for own in own_state if any(t in own for t in targets)} - set(new_keys)
    return LoadReport(source, copied, expected - copied, set(state) - used)
