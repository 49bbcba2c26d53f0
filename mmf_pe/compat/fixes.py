"""Version fixes: what `mmf==1.0.0rc10` needs to run on Python 3.11, PyTorch 2.x, transformers 4.57, omegaconf 2.3.

Each function is one fix, registered on the import hook by `mmf_pe.compat.install()`. Its docstring names the error it
fixes, the cause, and the test that fails without it; `patches/README.md`'s first table lists them all. Nothing in
site-packages is edited and no fix touches a module before the module that needs it is imported. Behaviour the plugin
adds is not here: it is in the plugin's classes, or its own patches where MMF has no extension point
(`mmf_pe/mmf_patches.py`).
"""
import collections.abc
import importlib
import importlib.util
import os
import sys
import threading
import types

from mmf_pe import PACKAGE_DIR, REPO_ROOT
from mmf_pe.compat.hook import AliasModule

CONFIG_DIR = os.path.join(PACKAGE_DIR, "configs")

# --- F1: transformers 4 moved its model modules ------------------------------------------------------------------
TRANSFORMERS_MOVED = {
    "transformers.modeling_bert": "transformers.models.bert.modeling_bert",
    "transformers.configuration_bert": "transformers.models.bert.configuration_bert",
    "transformers.configuration_auto": "transformers.models.auto.configuration_auto",
    "transformers.modeling_auto": "transformers.models.auto.modeling_auto",
    "transformers.tokenization_auto": "transformers.models.auto.tokenization_auto",
}


def transformers_module_alias(name):
    """F1. `ModuleNotFoundError: No module named 'transformers.modeling_bert'` (and the other four names).

    Cause: transformers 4 moved them under `transformers.models.*`; `BertLayerNorm` was removed (it was
    `nn.LayerNorm`). Fix: a proxy module under the old name. Test: tests/compat/test_fixes.py::test_f1_*.
    """
    extras = {}
    if name == "transformers.modeling_bert":
        import torch.nn

        extras["BertLayerNorm"] = torch.nn.LayerNorm
    return AliasModule(name, TRANSFORMERS_MOVED[name], extras)


# --- F2: transformers.optimization.AdamW removed ---------------------------------------------------------------
def add_transformers_adamw():
    """F2. `ImportError: cannot import name 'AdamW' from 'transformers.optimization'` (mmf/modules/optimizers.py).

    Cause: removed in transformers 4.4x. Fix: before MMF's optimizers module runs, give transformers.optimization an
    `AdamW` that is torch's, accepting the old `correct_bias=True` (torch always corrects the bias). Registered as
    MMF's `adam_w`. Test: test_f2_adamw.
    """
    import torch
    import transformers.optimization as optimization

    if hasattr(optimization, "AdamW"):
        return

    class AdamW(torch.optim.AdamW):
        """torch.optim.AdamW with transformers 3's signature (`correct_bias` must stay True)."""

        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True):
            if not correct_bias:
                raise ValueError("AdamW(correct_bias=False) is not supported by torch.optim.AdamW; use the default")
            super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    AdamW.__module__ = "transformers.optimization"
    optimization.AdamW = AdamW


# --- F3: demjson does not build ----------------------------------------------------------------------------------
def demjson_alias(name):
    """F3. `ModuleNotFoundError: No module named 'demjson'` (it fails to build: `use_2to3 is invalid`).

    Cause: setuptools >= 58. Fix: `demjson` is served by demjson3 (MMF only calls `decode` for `--config_override`).
    Test: test_f3_demjson.
    """
    return AliasModule(name, "demjson3")


# --- F4: torchtext has no build for torch 2.x ---------------------------------------------------------------------
def torchtext_stub(name):
    """F4. `ModuleNotFoundError: No module named 'torchtext'` (its last release is built against torch 2.3).

    Cause: mmf/utils/vocab.py imports `torchtext.vocab` at import time, only for GloVe-style pretrained vocabularies,
    which no model here uses. Fix (only when torchtext is not importable): a stub whose vocab classes raise a clear
    error if ever used. Test: test_f4_torchtext.
    """
    module = types.ModuleType(name)
    if name == "torchtext":
        module.__path__ = []
        return module

    class _Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchtext is not available on this stack; pretrained word vectors are unsupported")

    module.pretrained_aliases = {}
    module.Vectors = module.GloVe = module.FastText = module.Vocab = _Unavailable
    return module


def torchtext_missing():
    return importlib.util.find_spec("torchtext") is None


# --- F5: no YAML in the PyPI release -----------------------------------------------------------------------------
def resolve_config_path(path):
    """Where a relative config path that MMF cannot find lives in this plugin (None if nowhere)."""
    if os.path.isabs(path):
        return None
    normalized = os.path.normpath(path)
    candidates = []
    if normalized.startswith("configs" + os.sep):
        candidates.append(os.path.join(CONFIG_DIR, "mmf", normalized[len("configs" + os.sep):]))
    candidates.append(os.path.join(REPO_ROOT, normalized))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


def patch_configuration(module):
    """F5. `FileNotFoundError: .../mmf/configs/defaults.yaml` on every run.

    Cause: the sdist on PyPI ships no YAML at all. Fix: MMF's default config is our own `mmf_pe/configs/defaults.yaml`;
    a relative path MMF cannot find (`configs/datasets/hateful_memes/defaults.yaml`, `configs/zoo/*.yaml`,
    `projects/visual_bert_pe/hmd_pe.yaml` from any working directory) is looked up in `mmf_pe/configs/mmf/` and the
    repository root. Test: test_f5_default_config, test_f5_project_config_from_any_dir. This wrapper is also the only
    place rc10 reads `includes:`, so each include passes `mmf_pe.utils.config_files.check_included_config` (ours) on
    its way in (tests/tracking/test_secrets.py).
    """
    from mmf_pe.utils.config_files import check_included_config

    original_load_yaml = module.load_yaml
    nesting = threading.local()  # rc10's load_yaml calls this module attribute for each include: depth > 0

    def load(path, depth):
        if depth and isinstance(path, str):  # an include: refused unless it is an MMF config (secrets stay out)
            absolute = module.get_absolute_path(path)
            if os.path.isfile(absolute):
                check_included_config(absolute)
        return original_load_yaml(path)

    def load_yaml(f):
        depth = getattr(nesting, "depth", 0)
        nesting.depth = depth + 1
        try:
            return load(f, depth)
        except FileNotFoundError:
            found = resolve_config_path(f) if isinstance(f, str) else None
            if found is None:
                raise
            return load(found, depth)
        finally:
            nesting.depth = depth

    load_yaml.__wrapped__ = original_load_yaml
    module.load_yaml = load_yaml
    module.get_default_config_path = lambda: os.path.join(CONFIG_DIR, "defaults.yaml")


def patch_configuration_env_resolver(module):
    """F6. `UnsupportedInterpolationType: Unsupported interpolation type env` for `${env:VAR,default}` in YAML.

    Cause: omegaconf 2.1 renamed it `oc.env`, and rc10 clears all resolvers before registering its own. Fix: register
    `env` again after MMF's resolvers. Test: test_f6_env_resolver.
    """
    from omegaconf import OmegaConf

    original_register = module.Configuration._register_resolvers

    def _register_resolvers(self):
        original_register(self)
        if not OmegaConf.has_resolver("env"):
            OmegaConf.register_new_resolver("env", lambda key, default=None: os.environ.get(key, default))

    module.Configuration._register_resolvers = _register_resolvers


# --- F7: omegaconf >= 2.1 raises for missing keys --------------------------------------------------------------
def patch_omegaconf_missing_keys():
    """F7. `omegaconf.errors.ConfigAttributeError: Missing key datasets` (and many others) inside MMF.

    Cause: omegaconf 2.0 returned None for an absent key of a non-struct config; rc10 relies on it everywhere
    (`config.model_config.get(...)` is the exception, `config.datasets` the rule). Fix: `DictConfig.__getattr__`
    returns None again, only for an absent key of a non-struct config, never for dunders, and only when the caller is
    MMF's own code — user code and this plugin keep omegaconf 2.3's strictness. Test: test_f7_missing_key.
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigAttributeError

    original = DictConfig.__getattr__
    if getattr(original, "_mmf_pe_compat", False):
        return

    def __getattr__(self, key):
        try:
            return original(self, key)
        except ConfigAttributeError:
            if key.startswith("__") or OmegaConf.is_struct(self) or key in self:
                raise
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller == "mmf" or caller.startswith(("mmf.", "mmf_cli.")):
                return None
            raise

    __getattr__._mmf_pe_compat = True
    DictConfig.__getattr__ = __getattr__


# --- F8: collections.Mapping removed in Python 3.10 ---------------------------------------------------------------
def patch_logger_collections(module):
    """F8. `AttributeError: module 'collections' has no attribute 'Mapping'` when MMF logs a report.

    Cause: mmf/utils/logger.py uses `collections.Mapping` (moved to collections.abc, removed in 3.10). Fix: inside that
    module only, `collections` is a namespace that also has `Mapping`. Test: test_f8_logger_mapping.
    """
    shim = types.SimpleNamespace(**{k: getattr(collections, k) for k in dir(collections) if not k.startswith("__")})
    shim.Mapping = collections.abc.Mapping
    shim.abc = collections.abc
    module.collections = shim


# --- F9: DictConfig.pretty() removed --------------------------------------------------------------------------------
def patch_checkpoint_save_config(module):
    """F9. `ConfigAttributeError: Key 'pretty' is not in struct` when the checkpointer starts.

    Cause: `DictConfig.pretty()` was removed in omegaconf 2.1 (mmf/utils/checkpoint.py `save_config`). Fix: the same
    method written with `OmegaConf.to_yaml(..., resolve=True)`, written atomically. Test: test_f9_save_config.
    """
    from omegaconf import OmegaConf

    def save_config(self):
        from mmf_pe.utils.io import atomic_write_text

        atomic_write_text(
            os.path.join(self.ckpt_foldername, "config.yaml"), OmegaConf.to_yaml(self.config, resolve=True)
        )

    module.Checkpoint.save_config = save_config


# --- F10: the plugin registers itself ----------------------------------------------------------------------------
def patch_setup_imports(module):
    """F10. `Nothing registered under model visual_bert_pe` (and an unresolvable `config=projects/...`) unless the user
    sets MMF_USER_DIR.

    Cause: rc10 only imports plugins from `env.user_dir`, after it has already loaded the user's config. Fix: MMF's
    `setup_imports()` also imports `mmf_pe.register`, so `mmf_run`/`mmf_predict` know our components with no setting.
    Test: test_f10_registered_without_user_dir.
    """
    original = module.setup_imports

    def setup_imports():
        original()
        importlib.import_module("mmf_pe.register")

    setup_imports.__wrapped__ = original
    module.setup_imports = setup_imports


# --- F12: rank and world size only under NCCL ------------------------------------------------------------------------
def patch_distributed_helpers(module):
    """F12. On a PyTorch build without NCCL (the CPU wheels) every process of a multi-process run believes it is rank 0
    of 1 — silently: all ranks write checkpoints and logs, each takes the whole global batch, no metric is reduced.

    Cause: rc10's `get_rank` / `get_world_size` / `synchronize` (mmf/utils/distributed.py) answer 0 / 1 / nothing when
    `dist.is_nccl_available()` is False, whatever backend the process group uses. Fix: they ask only whether a process
    group is initialised (gloo included). Modules that import them by name get these, as the module is patched first.
    Test: tests/launch/test_compat.py::test_f12_*.
    """
    import torch.distributed as dist

    def initialized():
        return dist.is_available() and dist.is_initialized()

    def get_rank():
        return dist.get_rank() if initialized() else 0

    def get_world_size():
        return dist.get_world_size() if initialized() else 1

    def synchronize():
        if initialized() and dist.get_world_size() > 1:
            dist.barrier()

    module.get_rank, module.get_world_size, module.synchronize = get_rank, get_world_size, synchronize


# --- F13: distributed_init assumes CUDA and NCCL ---------------------------------------------------------------------
def patch_distributed_init(module):
    """F13. `RuntimeError: Found no NVIDIA driver on your system` (or `Torch not compiled with CUDA enabled`) in
    `distributed_init` when a multi-process run starts on CPU; with the default backend first `ProcessGroupNCCL is only
    supported with GPUs, no GPUs found!`.

    Cause: rc10's `distributed_init` (mmf/utils/distributed.py) warms the process group up with an all-reduce of
    `torch.zeros(1).cuda()`, and `distributed.backend` defaults to nccl. Fix: without CUDA an nccl request becomes gloo
    (said once on stdout), and the warm-up tensor lives where the backend wants it (CUDA for nccl, else CPU); the rest
    is rc10's function. Test: test_f13_*, and the 2-process gloo runs in tests/launch/test_runs.py.
    """
    import socket
    import warnings

    import torch
    import torch.distributed as dist

    def distributed_init(config):
        if config.distributed.world_size == 1:
            raise ValueError("Cannot initialize distributed with distributed_world_size=1")
        backend = config.distributed.backend or "nccl"
        if backend == "nccl" and not torch.cuda.is_available():
            print("mmf_pe: no CUDA device here, so distributed.backend=gloo instead of nccl", flush=True)
            backend = config.distributed.backend = "gloo"
        if dist.is_initialized():
            warnings.warn("Distributed is already initialized, cannot initialize twice!")
        else:
            print(f"Distributed Init (Rank {config.distributed.rank}): {config.distributed.init_method}", flush=True)
            dist.init_process_group(backend=backend, init_method=config.distributed.init_method,
                                    world_size=config.distributed.world_size, rank=config.distributed.rank)
            print(f"Initialized Host {socket.gethostname()} as Rank {config.distributed.rank}", flush=True)
            device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
            dist.all_reduce(torch.zeros(1, device=device))
            module.suppress_output(module.is_master())
        config.distributed.rank = dist.get_rank()
        return config.distributed.rank

    distributed_init.__wrapped__ = module.distributed_init
    module.distributed_init = distributed_init


# --- F14: every rank started by torchrun / srun lands on cuda:0 -----------------------------------------------------
def patch_run_local_rank(module):
    """F14. Under torchrun, or `srun` with one task per GPU, every process of a node trains on `cuda:0` (out of memory
    there, the other GPUs idle).

    Cause: when rc10's mmf_cli/run.py does not spawn the workers itself (`distributed.no_spawn`, which
    `infer_init_method` sets from torchrun's or SLURM's variables) it calls `distributed_main(0, ...)` on every rank,
    and that sets `config.device_id = 0` — overwriting even the SLURM_LOCALID that `infer_init_method` had read. Fix:
    for a rank a launcher started, the device comes from its local rank (LOCAL_RANK, else SLURM_LOCALID; mapping in
    mmf_pe/utils/devices.py). MMF's own spawn path is unchanged. Only `mmf_run` / `mmf_pe run` get it
    (`python -m mmf_cli.run` runs the module as __main__, which no import hook sees). Test: test_f14_*.
    """
    import torch

    from mmf_pe.utils.devices import device_index, local_rank_from_env

    original = module.distributed_main

    def distributed_main(device_id, configuration, predict=False):
        config = configuration.get_config()
        local_rank = local_rank_from_env() if config.distributed.get("no_spawn") else None
        if local_rank is not None:
            device_id = device_index(local_rank, torch.cuda.device_count())
        return original(device_id, configuration, predict)

    # torch.multiprocessing.spawn pickles it by name: it must be found as mmf_cli.run.distributed_main.
    distributed_main.__module__, distributed_main.__qualname__ = module.__name__, "distributed_main"
    distributed_main.__wrapped__ = original
    module.distributed_main = distributed_main


# --- F16: a gloo rank aborts at exit (SIGABRT) after a finished run ------------------------------------------------
def patch_release_process_group_at_exit(module):
    """F16. `terminate called without an active exception`, exit code -6 (SIGABRT) on a rank of a multi-process gloo
    run after "Finished run"; torchrun then kills the other ranks and reports the job failed (seen 1 in 10 runs).

    Cause: rc10 never ends the process group, so gloo's worker threads live into interpreter shutdown. A worker that
    releases its last collective (e.g. the non-root side of rc10's `reduce_dict`) needs the GIL for the tensor's
    Python object; during finalisation that thread is torn down from inside C++ and the process aborts
    (pytorch/pytorch#190489; an upstream atexit fix, #179291, was abandoned). Destroying the group does not join the
    workers here: a DDP-wrapped model keeps the group alive in C++. Fix: once rc10's `distributed_init` has set the
    group up, an atexit handler (run while the interpreter is whole) drains it — a barrier, bounded by a timeout,
    after which every earlier collective of every rank has run; a short GIL-free pause for the workers to release
    them — then destroys it. Test: test_f16_*.
    """
    import atexit

    original = module.distributed_init

    def distributed_init(config):
        rank = original(config)
        if not getattr(distributed_init, "exit_handler", False):
            atexit.register(release_process_group)
            distributed_init.exit_handler = True
        return rank

    distributed_init.__wrapped__ = original
    module.distributed_init = distributed_init


def release_process_group(barrier_timeout_s=60.0, pause_s=0.1):
    """Drain and destroy the default process group, if any (F16's exit handler)."""
    import datetime
    import gc
    import time

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    crashed = hasattr(sys, "last_value")  # set for an uncaught exception: the other ranks will not come to a barrier
    if dist.get_world_size() > 1 and dist.get_backend() == "gloo" and not crashed:
        try:  # a rank that died or hangs elsewhere must not keep this one from exiting
            dist.barrier(async_op=True).wait(timeout=datetime.timedelta(seconds=barrier_timeout_s))
        except Exception as error:
            print(f"mmf_pe: exit barrier incomplete ({error}); ending the process group anyway", flush=True)
        time.sleep(pause_s)
    dist.destroy_process_group()
    gc.collect()


# --- F15: `key=false` on the command line is the string "false" -----------------------------------------------------
def patch_dotlist_booleans(module):
    """F15. `training.wandb.enabled=false` turns tracking ON, `checkpoint.resume=true` silently does not resume.

    Cause: rc10's `Configuration._decode_value` parses command-line values with `ast.literal_eval`, which knows
    `True`/`False`/`None` but not YAML's `true`/`false`/`null`; those stay strings, and a non-empty string is truthy.
    Fix: `true`/`false`/`null` (any case) decode as in YAML; everything else is rc10's parsing. Test: test_f15_*.
    """
    original = module.Configuration._decode_value
    yaml_words = {"true": True, "false": False, "null": None, "~": None}

    def _decode_value(self, value):
        if isinstance(value, str) and value.strip().lower() in yaml_words:
            return yaml_words[value.strip().lower()]
        return original(self, value)

    module.Configuration._decode_value = _decode_value
