"""pe.method=scale: one learned scale per hidden unit on each selected layer's output (a test-only toy method).

It lives in tests/ on purpose: `tests/tuners/conftest.py` imports it, so it registers itself like a shipped method
folder does, and every contract test that iterates over the registry (tests/tuners/helpers.METHODS) covers it with
no list edited. docs/pe-methods.md walks through it as the worked example.
"""
from mmf_pe.tuners import register_pe_method
from tests.tuners.scale_method.config import ScaleConfig
from tests.tuners.scale_method.model import inject_scales

register_pe_method("scale", ScaleConfig, inject_scales)
