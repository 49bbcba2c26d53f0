"""Compatibility layer: makes PyPI's `mmf==1.0.0rc10` run on today's Python, PyTorch, transformers and omegaconf.

`install()` puts an import hook first on `sys.meta_path`; it is called at interpreter start by `mmf_pe_compat.pth`
(so plain `mmf_run`, subprocesses, DataLoader workers and DDP ranks all get it) and by the `mmf_pe` launcher for
interpreters that skip `.pth` files (`python -S`, `-I`). It holds two things only:
- the version fixes, in `fixes.py`, one function each (`patches/README.md`'s first table);
- plugin discovery: `mmf_pe.register` is imported by MMF's `setup_imports()` (F10), and the plugin's own patches for
  MMF modules without an extension point (`mmf_pe.mmf_patches`, the second table) are put on the same hook.
Behaviour the plugin adds lives in the plugin (its trainer, checkpoint class, models, datasets), not here.

Debugging switches (environment): `MMF_PE_COMPAT=0` stops the `.pth` file from activating the layer (as
for an interpreter that skips `.pth` files; the `mmf_pe` launcher still activates it); `MMF_PE_COMPAT_SKIP=F7,F9` leaves
out single fixes (the tests use it to show each fix's failure without it).
"""
import os
import sys

from mmf_pe.compat import fixes
from mmf_pe.compat.hook import CompatFinder

_finder = None


def _aliases(names, factory, condition=lambda: True):
    def register(finder):
        if condition():
            for name in names:
                finder.alias(name, factory)

    return register


def _patch(module, before=None, after=None):
    return lambda finder: finder.patch(module, before=before, after=after)


# version fix id -> how it hooks in (see patches/README.md). Order matters where two fixes patch one module.
FIXES = {
    "F1": _aliases(list(fixes.TRANSFORMERS_MOVED), fixes.transformers_module_alias),
    "F2": _patch("mmf.modules.optimizers", before=fixes.add_transformers_adamw),
    "F3": _aliases(["demjson"], fixes.demjson_alias),
    "F4": _aliases(["torchtext", "torchtext.vocab"], fixes.torchtext_stub, condition=fixes.torchtext_missing),
    "F5": _patch("mmf.utils.configuration", after=fixes.patch_configuration),
    "F6": _patch("mmf.utils.configuration", after=fixes.patch_configuration_env_resolver),
    "F7": _patch("mmf", before=fixes.patch_omegaconf_missing_keys),
    "F8": _patch("mmf.utils.logger", after=fixes.patch_logger_collections),
    "F9": _patch("mmf.utils.checkpoint", after=fixes.patch_checkpoint_save_config),
    "F10": _patch("mmf.utils.env", after=fixes.patch_setup_imports),
    "F12": _patch("mmf.utils.distributed", after=fixes.patch_distributed_helpers),
    "F13": _patch("mmf.utils.distributed", after=fixes.patch_distributed_init),
    "F14": _patch("mmf_cli.run", after=fixes.patch_run_local_rank),
    "F15": _patch("mmf.utils.configuration", after=fixes.patch_dotlist_booleans),
    "F16": _patch("mmf.utils.distributed", after=fixes.patch_release_process_group_at_exit),
}
FIX_IDS = list(FIXES)


def discover_plugin(finder, skip=()):
    """The plugin's patches on MMF modules that offer no extension point (the plugin owns and installs them)."""
    from mmf_pe import mmf_patches

    mmf_patches.install(finder, skip)
    return mmf_patches.PATCH_IDS


def build_finder(skip=()):
    finder = CompatFinder()
    for fix_id, register in FIXES.items():
        if fix_id not in skip:
            register(finder)
    known = FIX_IDS + discover_plugin(finder, skip)
    unknown = set(skip) - set(known)
    if unknown:
        raise ValueError(f"unknown fix ids {sorted(unknown)}; known: {known}")
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
