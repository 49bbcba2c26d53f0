"""Compatibility layer: makes PyPI's `mmf==1.0.0rc10` run on today's Python, PyTorch, transformers and omegaconf.

This is the only place in mmf-pe with process-wide effects. `install()` puts an import hook first on `sys.meta_path`;
it is called at interpreter start by `mmf_pe_compat.pth` (so plain `mmf_run`, subprocesses, DataLoader workers and
DDP ranks all get it) and by the `mmf_pe` launcher for interpreters that skip `.pth` files (`python -S`, `-I`).
The fixes themselves are in `fixes.py`, one function each; `patches/README.md` is their index.

Debugging switches (environment): `MMF_PE_COMPAT=0` stops the `.pth` file from activating the layer (as
for an interpreter that skips `.pth` files; the `mmf_pe` launcher still activates it); `MMF_PE_COMPAT_SKIP=F7,F9` leaves
out single fixes (the tests use it to show each fix's failure without it).
"""
import os
import sys

from mmf_pe.compat import fixes
from mmf_pe.compat.hook import CompatFinder

_finder = None


def _register(finder, fix_id):
    if fix_id == "F1":
        for old_name in fixes.TRANSFORMERS_MOVED:
            finder.alias(old_name, fixes.transformers_module_alias)
    elif fix_id == "F2":
        finder.patch("mmf.modules.optimizers", before=fixes.add_transformers_adamw)
    elif fix_id == "F3":
        finder.alias("demjson", fixes.demjson_alias)
    elif fix_id == "F4":
        if fixes.torchtext_missing():
            finder.alias("torchtext", fixes.torchtext_stub)
            finder.alias("torchtext.vocab", fixes.torchtext_stub)
    elif fix_id == "F5":
        finder.patch("mmf.utils.configuration", after=fixes.patch_configuration)
    elif fix_id == "F6":
        finder.patch("mmf.utils.configuration", after=fixes.patch_configuration_env_resolver)
    elif fix_id == "F7":
        finder.patch("mmf", before=fixes.patch_omegaconf_missing_keys)
    elif fix_id == "F8":
        finder.patch("mmf.utils.logger", after=fixes.patch_logger_collections)
    elif fix_id == "F9":
        finder.patch("mmf.utils.checkpoint", after=fixes.patch_checkpoint_save_config)
    elif fix_id == "F10":
        finder.patch("mmf.utils.env", after=fixes.patch_setup_imports)
    elif fix_id == "F11":
        finder.patch("mmf.utils.checkpoint", after=fixes.patch_checkpoint_atomic_save)
    elif fix_id == "F12":
        finder.patch("mmf.utils.distributed", after=fixes.patch_distributed_helpers)
    elif fix_id == "F13":
        finder.patch("mmf.utils.distributed", after=fixes.patch_distributed_init)
    elif fix_id == "F14":
        finder.patch("mmf_cli.run", after=fixes.patch_run_local_rank)
    elif fix_id == "F15":
        finder.patch("mmf.utils.configuration", after=fixes.patch_dotlist_booleans)
    else:
        raise ValueError(f"unknown fix {fix_id}")


FIX_IDS = ["F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "F10", "F11", "F12", "F13", "F14", "F15"]


def build_finder(skip=()):
    finder = CompatFinder()
    for fix_id in FIX_IDS:
        if fix_id not in skip:
            _register(finder, fix_id)
    return finder


def install():
    """Activate the layer (idempotent). Must run before the first `import mmf` to take effect."""
    global _finder
    if _finder is None:
        skip = {s.strip() for s in os.environ.get("MMF_PE_COMPAT_SKIP", "").split(",") if s.strip()}
        _finder = build_finder(skip)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return _finder


def is_installed():
    return _finder is not None and _finder in sys.meta_path
