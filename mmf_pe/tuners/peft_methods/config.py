"""Config checks shared by the methods injected through peft (lora, ia3)."""


def check_targets(key, value):
    """A `target_modules`-like key (`key` as configs spell it: `pe.lora.target_modules`): a list of exact paths
    relative to one encoder layer, or one regex string."""
    if isinstance(value, str):
        return
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a non-empty list of module paths or one regex string, got {value!r}")
