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


def _aliases(names, factory, condition=lambda: True):
    def register(finder):
        if condition():
            for name in names:
                finder.alias(name, factory)

    return register


def _patch(module, before=None, after=None):
    return lambda finder: finder.patch(module, before=before, after=after)


def _each(*registers):
    return lambda finder: [register(finder) for register in registers]


# fix id -> how it hooks in (see patches/README.md). Order matters where two fixes patch one module.
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
    "F17": _patch("mmf_cli.hm_convert", after=fixes.patch_hm_convert),
    "F20": _patch("mmf.datasets.databases.readers.feature_readers", after=fixes.patch_lmdb_reader_safe_records),
    "F21": _patch("mmf.datasets.databases.readers.feature_readers", after=fixes.patch_lmdb_reader_damaged_file),
    "F22": _patch("mmf.datasets.databases.readers.feature_readers", after=fixes.patch_npy_feature_reader),
    "F23": _patch("mmf.datasets.databases.annotation_database", after=fixes.patch_annotation_npy),
    "F24": _patch("mmf.datasets.databases.readers.feature_readers", after=fixes.patch_lmdb_reader_env_per_process),
    "F28": _patch("mmf.datasets.databases.readers.feature_readers", after=fixes.patch_lmdb_reader_feature_dtype),
    "F29": _each(_patch("mmf.common.batch_collator", after=fixes.patch_batch_collator),
                 _patch("mmf.utils.build", after=fixes.patch_dataloader_pin_memory)),
}
FIX_IDS = list(FIXES)


def build_finder(skip=()):
    finder = CompatFinder()
    unknown = set(skip) - set(FIXES)
    if unknown:
        raise ValueError(f"unknown fix ids {sorted(unknown)}; known: {FIX_IDS}")
    for fix_id, register in FIXES.items():
        if fix_id not in skip:
            register(finder)
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
