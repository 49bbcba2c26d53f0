"""An adapter's two files checked as data before any model is built for them (uploads and folder adapters alike).

The config is plain JSON: bounded nesting and integers, finite numbers, every field of the type it must have, the
PE method's settings validated by the method's own config class, sizes bounded by the base (a LoRA rank or an
adapter bottleneck above the hidden size adds nothing and can cost gigabytes), and no string that OmegaConf would
resolve (`${oc.env:NAME}` would put a server environment value into the model config and its error messages).
Weights must be finite. A refusal is an `AdapterError` whose `field` names the key (`config.pe.rank`, `weights`).
"""
import json
import math
import re
import typing

from mmf_pe.serve import jsonsafe
from mmf_pe.tuners.export import CONFIG_NAME, FORMAT, WEIGHTS_NAME

SCALARS = (str, int, float, bool, type(None))
MAX_CONFIG_BYTES = 4 * 2**20  # an export's config is a few KB (~100 KB with a 2048-d feature standardisation)


class AdapterError(ValueError):
    """An adapter that cannot be served on this base (says which file and why; `field`: the key, where known)."""

    field = None


class AdapterChanged(AdapterError):
    """An adapter whose files were replaced while they were read (an upload's version switch): reading again gets
    the new version."""


def refuse(message, field):
    error = AdapterError(message)
    error.field = field
    return error


def checked_config(config_bytes, where, base_model=None):
    """The parsed adapter config, or AdapterError naming the file and key. `base_model`: the model_config of the base
    it will run on; the sizes it bounds (layers, hidden size, feature width) are checked where the base has them."""
    base_model = base_model or {}
    name = f"{where}/{CONFIG_NAME}"
    if len(config_bytes) > MAX_CONFIG_BYTES:
        raise refuse(f"{name}: {len(config_bytes):,} bytes; an adapter config is at most {MAX_CONFIG_BYTES:,}",
                     "config")
    try:
        config = jsonsafe.loads(config_bytes, finite=True)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise refuse(f"{name}: line {getattr(error, 'lineno', '?')}: not valid JSON", "config") from None
    except jsonsafe.JSONLimitError as error:
        at = f"{error.path}: " if error.path else ""
        raise refuse(f"{name}: {at}{error.message}", f"config.{error.path}" if error.path else "config") from None
    except ValueError as error:
        raise refuse(f"{name}: not valid JSON ({error})", "config") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise refuse(f"{name}: not an `mmf_pe export-adapter` config (format {FORMAT})", "config.format")
    mode = config.get("training_mode")
    if mode not in ("fc", "pe"):
        raise refuse(f"{name}: training_mode {_short(mode)}; only fc and pe exports share a frozen base",
                     "config.training_mode")
    for key in ("architecture", "pe", "base_fingerprint", "feature_provenance"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise refuse(f"{name}: {key} must be a mapping (JSON object), not {type(config[key]).__name__}",
                         f"config.{key}")
    for key, value in (config.get("architecture") or {}).items():
        if not isinstance(value, SCALARS):
            raise refuse(f"{name}: architecture.{key} must be a number, string, boolean or null",
                         f"config.architecture.{key}")
    _no_interpolation(config, name)
    if not isinstance((config.get("base_fingerprint") or {}).get("digest"), str):
        raise refuse(f"{name}: base_fingerprint.digest missing (the export records its base's sha256)",
                     "config.base_fingerprint")
    threshold = config.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise refuse(f"{name}: threshold {_short(threshold)} is not a number in [0, 1]", "config.threshold")
    if config.get("num_parameters") is not None and (isinstance(config["num_parameters"], bool)
                                                     or not isinstance(config["num_parameters"], int)):
        raise refuse(f"{name}: num_parameters must be an integer", "config.num_parameters")
    check_for_base(config, where, base_model)
    return config


def check_for_base(config, where, base_model):
    """The checks that depend on the base the adapter runs on (`base_model`: its model_config; sizes are bounded
    where it has them): the feature normalisation's width and the PE settings."""
    name = f"{where}/{CONFIG_NAME}"
    _check_normalisation((config.get("feature_provenance") or {}).get("normalisation"), name, base_model or {})
    if config.get("training_mode") == "pe":
        _check_pe(config.get("pe") or {}, name, base_model or {})


def check_weights(tensors, where):
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise refuse(f"{where}/{WEIGHTS_NAME}: tensor {key} holds NaN or infinity; an adapter with non-finite "
                         "weights scores nothing", "weights")


def _no_interpolation(config, name):
    """Strings of the parts that reach OmegaConf (pe, architecture) must not be interpolations: refused, not
    resolved, so no environment value or other config node ever enters the model or an error message."""
    stack = [(config.get(key), key) for key in ("pe", "architecture")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and "${" in value:
            raise refuse(f"{name}: {path}: {_short(value)} looks like an OmegaConf interpolation; an uploaded config "
                         "is data and is never resolved", f"config.{path}")
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))


def _check_normalisation(normalisation, name, base_model):
    if normalisation is None:
        return
    field = "config.feature_provenance.normalisation"
    width = base_model.get("visual_embedding_dim")
    if width is None:  # not yet matched to a base (or one without region features): its shape is checked later
        width = len(normalisation.get("mean") or []) if isinstance(normalisation, dict) else 0
    if not isinstance(normalisation, dict):
        raise refuse(f"{name}: feature_provenance.normalisation must be {{'mean': [...], 'std': [...]}}", field)
    for key in ("mean", "std"):
        values = normalisation.get(key)
        if not isinstance(values, list) or len(values) != width or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and (key == "mean" or v > 0) for v in values):
            raise refuse(f"{name}: feature_provenance.normalisation.{key} must be {width} numbers"
                         + (" (all positive)" if key == "std" else ""), f"{field}.{key}")


def _check_pe(pe, name, base_model):
    from mmf_pe.tuners import get_pe_method, pe_config_from

    method = pe.get("method") or "paper"
    try:
        config_cls = get_pe_method(method).config_cls if isinstance(method, str) else None
    except ValueError as error:
        raise refuse(f"{name}: {error}", "config.pe.method") from None
    if config_cls is None:
        raise refuse(f"{name}: pe.method must be a string, not {type(method).__name__}", "config.pe.method")
    hints = typing.get_type_hints(config_cls)
    for key, value in pe.items():
        if key in hints and value is not None and not _fits(value, hints[key]):
            raise refuse(f"{name}: pe.{key} = {_short(value)} is not a {_type_name(hints[key])}", f"config.pe.{key}")
    try:
        settings = pe_config_from(pe)
        if base_model.get("num_hidden_layers") is not None:
            settings.selected_layers(int(base_model["num_hidden_layers"]))
    except (ValueError, TypeError) as error:
        found = re.search(r"pe\.(?:\w+\.)?(\w+)", str(error))  # pe.<key> or pe.<method>.<key>: the export's pe.<key>
        raise refuse(f"{name}: {error}", f"config.pe.{found.group(1)}" if found else "config.pe") from None
    if base_model.get("hidden_size") is None:
        return
    hidden = int(base_model["hidden_size"])
    rank = settings.get("rank")
    if rank is not None and rank > hidden:
        raise refuse(f"{name}: pe.rank = {rank} is over the hidden size {hidden} (a larger rank adds nothing)",
                     "config.pe.rank")
    factor = settings.get("reduction_factor")
    if factor is not None and not 1 <= factor <= hidden:
        raise refuse(f"{name}: pe.reduction_factor = {factor} must be in [1, {hidden}] (bottleneck = hidden size "
                     f"{hidden} / reduction_factor, at least 1 and at most the hidden size)",
                     "config.pe.reduction_factor")


def _fits(value, hint):
    """`value` (parsed JSON) against a dataclass field's type (int, float, bool, str, Optional/Union, List[...])."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if origin in (list, typing.List):
        (item,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True  # a type this check does not know: the method's own validate() decides


def _type_name(hint):
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
