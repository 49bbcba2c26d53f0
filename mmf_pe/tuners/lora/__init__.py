"""pe.method=lora: peft's LoRA on chosen linears of the encoder layers (Hu et al. 2022)."""
from mmf_pe.tuners.batched import LORA_HANDLERS, register_batched
from mmf_pe.tuners.lora.config import LoraConfig
from mmf_pe.tuners.peft_methods.model import inject_lora
from mmf_pe.tuners.registry import register_pe_method

register_pe_method("lora", LoraConfig, inject_lora, any_encoder=True)
register_batched("lora", LORA_HANDLERS)  # mixed-adapter batches (mmf_pe/tuners/batched.py)
