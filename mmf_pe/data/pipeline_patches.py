"""The plugin's patches on rc10's input pipeline, where rc10 offers no extension point (reasons: patches/README.md).

rc10 builds its readers itself, by module name, with no registry or factory between a config and them: every
dataset's `FeaturesDatabase` constructs `FeatureReader`, which constructs `LMDBFeatureReader` /
`PaddedFasterRCNNFeatureReader` from its own module; `MMFDataset` constructs `AnnotationDatabase`. A safe reader must
hold for every dataset rc10 builds (its own builders included), in every process (DataLoader workers, DDP ranks), so
each fix wraps rc10's method where rc10 defines it. (The collate and pinned memory are the `mmf_pe` trainer's:
`mmf_pe/trainers/loading.py`.) Installed by the plugin's hook table (`mmf_pe.mmf_patches`) when the MMF module
is imported; each function receives that module (nothing here imports MMF by name). Functions keep rc10's original as
`__wrapped__`, so tests compare the two.
"""
import os
import types


# --- F20-F23: MMF's feature and annotation readers unpickle, and memory-map, whatever a file holds -----------------
def patch_lmdb_reader_safe_records(module):
    """F20. A feature LMDB record whose unpickling runs code (e.g. creates a file) did so under `mmf_run`.

    Cause: rc10's `LMDBFeatureReader` (mmf/datasets/databases/readers/feature_readers.py) reads the `keys` entry and
    each record with `pickle.loads`. Fix: both go through `mmf_pe.utils.safe_pickle` (numpy arrays, dtypes, scalars
    and plain containers only); anything else is refused naming the LMDB and key. The key lookup is rc10's.
    Test: tests/data/test_hostile_files.py::test_f20_*.
    """
    from mmf_pe.data.lmdb_features import load_keys, load_record

    reader = module.LMDBFeatureReader

    from mmf_pe.data.loader import open_readonly_env

    def _init_db(self):
        self.env = open_readonly_env(self.db_path)
        with self.env.begin(write=False, buffers=True) as txn:
            raw = txn.get(b"keys")
            if raw is None:
                raise RuntimeError(f"{self.db_path}: feature LMDB has no 'keys' entry (not an MMF feature LMDB)")
            self.image_ids = load_keys(raw, self.db_path)
        self.image_id_indices = {key: index for index, key in enumerate(self.image_ids)}

    def _load(self, image_file_path):
        if self.env is None:
            self._init_db()
        key = image_key(self, image_file_path)
        with self.env.begin(write=False, buffers=True) as txn:
            raw = txn.get(key)
            if raw is None:
                raise KeyError(key)
            return load_record(raw, self.db_path, key)

    _init_db.__wrapped__, _load.__wrapped__ = reader._init_db, reader._load
    reader._init_db, reader._load = _init_db, _load


def image_key(reader, image_file_path):
    """rc10's LMDB key for a feature path: the trailing number of the name if the LMDB has it, else the name."""
    name = os.path.relpath(image_file_path, reader.db_path).split(".npy")[0]
    try:
        numeric = str(int(name.split("_")[-1])).encode()
        if numeric in reader.image_id_indices:
            return numeric
    except ValueError:
        pass
    key = str(name).encode()
    if key not in reader.image_id_indices:
        raise KeyError(key)
    return key


class MissingFeaturesError(KeyError):
    def __str__(self):
        return str(self.args[0])


def patch_lmdb_reader_damaged_file(module):
    """F21. A truncated `data.mdb` kills `mmf_run` with SIGBUS (exit 135, no message); a corrupt one raises a bare
    `lmdb.PageNotFoundError` / `CorruptedError` that names no file; an id missing from the LMDB a bare
    `KeyError: b'..'`.

    Cause: LMDB memory-maps the file and rc10 opens it unchecked; a page past a short file's end is a bus error, and
    rc10 passes lmdb's and the index's errors on as they are. Fix: before the first read the file size is held against
    LMDB's meta pages (`mmf_pe.utils.lmdb_file`); lmdb errors and missing ids are re-raised naming the file (and the
    key). Test: test_f21_*.
    """
    import lmdb

    from mmf_pe.utils.lmdb_file import LMDBFileError, check_lmdb_file, data_file

    reader = module.LMDBFeatureReader
    original_init_db, original_load = reader._init_db, reader._load

    def _init_db(self):
        check_lmdb_file(self.db_path)
        try:
            original_init_db(self)
        except lmdb.Error as error:
            raise LMDBFileError(f"{data_file(self.db_path)}: cannot read the LMDB "
                                f"({type(error).__name__}: {error})") from None

    def _load(self, image_file_path):
        try:
            return original_load(self, image_file_path)
        except lmdb.Error as error:
            raise LMDBFileError(f"{data_file(self.db_path)}: corrupt LMDB, reading the record for "
                                f"{image_file_path} failed ({type(error).__name__}: {error})") from None
        except KeyError as error:
            if isinstance(error, MissingFeaturesError):
                raise
            raise MissingFeaturesError(
                f"{self.db_path} has no features for {os.path.basename(str(image_file_path))} (key {error.args[0]!r}); "
                "extract them (`mmf_pe extract`) or drop the sample from the annotations") from None

    _init_db.__wrapped__, _load.__wrapped__ = original_init_db, original_load
    reader._init_db, reader._load = _init_db, _load


def patch_npy_feature_reader(module):
    """F22. A per-image `.npy` / `_info.npy` feature file (MMF's other feature layout, written by
    `mmf_pe extract --npy-dir`) whose unpickling runs code did so under `mmf_run`.

    Cause: rc10's `PaddedFasterRCNNFeatureReader._load` calls `np.load(..., allow_pickle=True)`. Fix: object arrays
    are unpickled by `mmf_pe.utils.safe_pickle.load_npy` (plain data only, the file named otherwise); numeric arrays
    load with `allow_pickle=False`. Test: test_f22_*.
    """
    from mmf_pe.utils.safe_pickle import load_npy

    reader = module.PaddedFasterRCNNFeatureReader

    def _load(self, image_feat_path):
        image_info = {"features": load_npy(image_feat_path)}
        info_path = "{}_info.npy".format(image_feat_path.split(".npy")[0])
        if os.path.exists(info_path):
            image_info.update(load_npy(info_path).item())
        return image_info

    _load.__wrapped__ = reader._load
    reader._load = _load


def patch_annotation_npy(module):
    """F23. An `.npy` annotation database (rc10's "imdb" layout) whose unpickling runs code did so when loaded.

    Cause: rc10's `AnnotationDatabase._load_npy` (mmf/datasets/databases/annotation_database.py) calls
    `np.load(path, allow_pickle=True)`. Fix: inside that module only, `np.load` is `mmf_pe.utils.safe_pickle.load_npy`
    (plain data only; the file named otherwise). Test: test_f23_*.
    """
    import numpy

    from mmf_pe.utils.safe_pickle import load_npy

    class _NumpyWithSafeLoad(types.ModuleType):
        def __getattr__(self, name):
            return getattr(numpy, name)

    shim = _NumpyWithSafeLoad("numpy")
    shim.load = lambda path, *args, **kwargs: load_npy(path)  # the module's one np.load: allow_pickle=True
    module.np = shim
# --- F24, F28: the input pipeline (LMDB in DataLoader workers, fp16 features) ---------------------------------------
def patch_lmdb_reader_env_per_process(module):
    """F24. With `num_workers > 0`, a DataLoader worker forked after its parent had read a feature (a 0-worker
    pass before, a test, a notebook) goes on using the parent's LMDB environment, which LMDB does not support
    (lmdb.h: "Use an MDB_env* in the process which opened it, not after fork()"). Nothing visibly failed here with
    read-only lock-free environments; it is undefined behaviour that a future lmdb may refuse.

    Cause: rc10's `LMDBFeatureReader` opens its environment once per reader object (`self.env`), and the reader is
    copied into each worker with the dataset (with the spawn / forkserver start methods, Python 3.14's default, a
    reader whose environment is open cannot be pickled at all). Fix: the environment belongs to the process that
    opened it (`self.env_pid`); a reader in another process opens its own (read-only, lock-free, no read-ahead,
    through F20's safe record reader and F21's file check) on its first read there; a pickled reader leaves its
    environment behind. Test: tests/data/test_loader.py::test_f24_*.
    """
    reader = module.LMDBFeatureReader
    original_init_db, original_load = reader._init_db, reader._load

    def _init_db(self):
        original_init_db(self)
        self.env_pid = os.getpid()

    def _load(self, image_file_path):
        if self.env is not None and getattr(self, "env_pid", None) != os.getpid():
            self.env = None  # the parent's environment: never used here (only dropped; it has no lock to release)
        return original_load(self, image_file_path)

    def __getstate__(self):  # a reader sent to a spawn / forkserver worker: the environment stays here
        state = dict(self.__dict__, env=None)
        state.pop("env_pid", None)
        return state

    _init_db.__wrapped__, _load.__wrapped__ = original_init_db, original_load
    reader._init_db, reader._load, reader.__getstate__ = _init_db, _load, __getstate__


def patch_lmdb_reader_feature_dtype(module):
    """F28. Region features stored float16 (`mmf_pe extract --feature-dtype float16`) reach the model as float32:
    twice the bytes through the loader, collate, worker-to-trainer transfer and host-to-GPU copy, plus an extra copy
    of every record (~0.8 MB at 100 x 2048) even when it needs no padding.

    Cause: rc10's `PaddedFasterRCNNFeatureReader.read` (the `LMDBFeatureReader`'s) pads each record into a new
    `np.zeros((max_features, D), dtype=np.float32)`. Fix: for LMDB records, `mmf_pe.data.loader.pad_features`:
    float16 and float32 keep their dtype, other dtypes become float32 as before, and a record that already has
    `max_features` rows is not copied; `max_features` (the region count) and the other info fields are rc10's. The
    model casts features to its own dtype where they enter (`DeviceAwareVisioLinguisticEmbeddings`). rc10's legacy
    single-item records go to rc10's code. Test: tests/data/test_loader.py::test_f28_*.
    """
    import numpy as np
    import torch

    from mmf_pe.data.loader import pad_features

    reader = module.LMDBFeatureReader
    original_read = reader.read

    def read(self, image_feat_path):
        image_info = self._load(image_feat_path)
        features = image_info.get("features")
        if self.take_item or not isinstance(features, np.ndarray) or features.dtype == object or features.ndim < 2:
            return original_read(self, image_feat_path)  # rc10's other record layouts (reads the record again)
        self.first = False
        image_feature, count = pad_features(features, self.max_loc)
        del image_info["features"]
        image_info["max_features"] = torch.tensor(count, dtype=torch.long)
        return image_feature, image_info

    read.__wrapped__ = original_read
    reader.read = read
