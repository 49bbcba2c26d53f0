"""LoRA and IA3 through peft, injected in place into the BERT encoder (no PeftModel wrapper)."""
from mmf_pe.tuners.peft_methods.model import (
    base_key,
    inject_ia3,
    inject_lora,
    merge_and_unload,
    target_regex,
    wrapped_key,
    wrapped_module_paths,
)

__all__ = [
    "inject_lora", "inject_ia3", "merge_and_unload", "target_regex",
    "wrapped_module_paths", "wrapped_key", "base_key",
]
