"""The plugin's behaviour patches on MMF modules that offer no extension point, and how they hook in.

Everything else the plugin changes in MMF is a class it owns at one of MMF's extension points (the `mmf_pe` trainer,
its checkpoint class, registered models, processors and datasets). These few cannot be: rc10 constructs the object
itself by module name (the feature and annotation readers every dataset builds), or the entry is MMF's own console
script (`mmf_convert_hm`). Each reason is in patches/README.md's second table.

Discovered by the compatibility layer (`mmf_pe.compat.install`, at interpreter start), which calls `install(finder)`;
a patch runs only when its MMF module is imported, in every process (DataLoader workers and DDP ranks included).
Why not from `mmf_pe.register` (imported by MMF's `setup_imports()`): `mmf_convert_hm` never calls it, and a
DataLoader worker started with spawn / forkserver unpickles rc10's reader in a process that never imports it.
`MMF_PE_COMPAT_SKIP=F20,...` leaves single patches out, as for the version fixes. This module stays cheap to import
(every Python process of the environment reads it): the patches import what they need when they run.
"""
from mmf_pe.data import pipeline_patches as pipeline

READERS = "mmf.datasets.databases.readers.feature_readers"


def _hm_convert(module):
    from mmf_pe.datasets.hateful_memes.mmf_convert_hm import patch_hm_convert

    patch_hm_convert(module)


# id -> [(MMF module, patch(module))]. Order matters where two patches wrap one method (F21 and F24 wrap F20's).
PATCHES = {
    "F17": [("mmf_cli.hm_convert", _hm_convert)],
    "F20": [(READERS, pipeline.patch_lmdb_reader_safe_records)],
    "F21": [(READERS, pipeline.patch_lmdb_reader_damaged_file)],
    "F22": [(READERS, pipeline.patch_npy_feature_reader)],
    "F23": [("mmf.datasets.databases.annotation_database", pipeline.patch_annotation_npy)],
    "F24": [(READERS, pipeline.patch_lmdb_reader_env_per_process)],
    "F28": [(READERS, pipeline.patch_lmdb_reader_feature_dtype)],
}
PATCH_IDS = list(PATCHES)


def install(finder, skip=()):
    """Register each patch not in `skip` on the compatibility layer's import hook (a `CompatFinder`)."""
    for patch_id, hooks in PATCHES.items():
        if patch_id not in skip:
            for module, patch in hooks:
                finder.patch(module, after=patch)
