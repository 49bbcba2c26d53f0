"""What a run is (mode label, parameter counts, seed) and its config made safe to log."""
from omegaconf import OmegaConf

from mmf_pe.utils.secrets import redact


def as_bool(value):
    """A config flag: rc10's command-line parser leaves `key=false` as the string "false" (truthy), so read it."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def unwrap(model):
    """The model inside DataParallel/DistributedDataParallel wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def parameter_counts(model):
    """{total, trained, adapter}: the model's own `parameter_counts()` (visual_bert_pe) or counted from
    requires_grad, with adapter None where the model does not say which parameters are its PE method's."""
    model = unwrap(model)
    if hasattr(model, "parameter_counts"):
        counts = dict(model.parameter_counts())
        counts.setdefault("adapter", None)
        return {k: (int(v) if v is not None else None) for k, v in counts.items()}
    parameters = list(model.parameters())
    return {
        "total": sum(p.numel() for p in parameters),
        "trained": sum(p.numel() for p in parameters if p.requires_grad),
        "adapter": None,
    }


def training_mode_and_method(model, model_config=None):
    """(training_mode, pe_method): from the model's attributes, else from its config; method only for PE runs."""
    model = unwrap(model)
    model_config = model_config or {}
    mode = getattr(model, "training_mode", None) or model_config.get("training_mode", None)
    method = None
    if mode == "pe":
        pe_config = getattr(model, "pe_config", None)
        method = getattr(pe_config, "method", None)
        if method is None:
            from mmf_pe.tuners import method_settings

            method = method_settings(model_config.get("pe", None), None)[0]
    return mode, method


def mode_label(training_mode, pe_method=None, fallback="model"):
    """`fc`, `full`, `pe/paper`...: the name runs are grouped by in reports."""
    if not training_mode:
        return fallback
    return f"{training_mode}/{pe_method}" if pe_method else str(training_mode)


def scrub_secrets(value):
    """A copy with credentials replaced (secret-looking keys, values of secret environment variables): the tracker
    gets the config, never a key (rules: mmf_pe.utils.secrets)."""
    return redact(value)


def config_to_dict(config):
    """Plain dict of an MMF config (resolved where possible), secrets scrubbed."""
    if OmegaConf.is_config(config):
        try:
            config = OmegaConf.to_container(config, resolve=True)
        except Exception:  # an unresolvable interpolation: log it unresolved rather than not at all
            config = OmegaConf.to_container(config, resolve=False)
    return scrub_secrets(config)


def _model_mode_label(model):
    """A model's own report label where it has one (e.g. clip_pe: `clip-cross/fc`), so different systems in the same
    mode never share a Table II row."""
    label = getattr(unwrap(model), "mode_label", None)
    return label() if callable(label) else None


def describe_run(trainer):
    """The `run` event of metrics.jsonl for an rc10 trainer (after load())."""
    config = trainer.config
    model_name = config.model
    model_config = config.model_config.get(model_name, None) or {}
    mode, method = training_mode_and_method(trainer.model, model_config)
    datasets = [d for d in str(config.datasets).split(",") if d]
    seed = config.training.get("seed", None)
    decision = getattr(trainer, "precision_decision", None)  # the mmf_pe trainer's (mmf_pe/trainers/precision.py)
    return {
        "event": "run",
        "schema": 1,
        "experiment": config.training.get("experiment_name", None),
        "model": model_name,
        "dataset": datasets[0] if datasets else None,
        "datasets": datasets,
        "mode": _model_mode_label(trainer.model) or mode_label(mode, method, fallback=model_name),
        "training_mode": mode,
        "pe_method": method,
        "seed": int(seed) if seed is not None else None,
        "max_updates": config.training.get("max_updates", None),
        "params": parameter_counts(trainer.model),
        "precision": decision.as_dict() if decision is not None else None,
        "save_dir": str(config.env.save_dir),
    }
