"""Every runtime fix that lets `mmf==1.0.0rc10` run on Python 3.11 / PyTorch 2.x / transformers 4.57 / omegaconf 2.3.

Each function is one fix, registered on the import hook by `mmf_pe.compat.install()`. Its docstring names the error it
fixes, the cause, and the test that fails without it; `patches/README.md` lists them all. Nothing in site-packages is
edited and no fix touches a module before the module that needs it is imported.
"""
import collections.abc
import importlib
import importlib.util
import os
import sys
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
    repository root. Test: test_f5_default_config, test_f5_project_config_from_any_dir.
    """
    original_load_yaml = module.load_yaml

    def load_yaml(f):
        try:
            return original_load_yaml(f)
        except FileNotFoundError:
            found = resolve_config_path(f) if isinstance(f, str) else None
            if found is None:
                raise
            return original_load_yaml(found)

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


# --- F11: checkpoints written in place ------------------------------------------------------------------------------
def patch_checkpoint_atomic_save(module):
    """F11. A run killed while saving leaves a truncated `current.ckpt`; `checkpoint.resume=True` then fails with
    `RuntimeError: PytorchStreamReader failed reading zip archive`.

    Cause: rc10's `Checkpoint.save` calls `torch.save` straight onto the final paths. Fix: inside
    mmf/utils/checkpoint.py only, `torch.save` writes a temporary file and renames it (atomic on POSIX).
    Test: test_f11_atomic_checkpoint.
    """
    import torch

    from mmf_pe.utils.io import atomic_torch_save

    class _TorchWithAtomicSave(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

    shim = _TorchWithAtomicSave("torch")
    shim.save = lambda obj, f, *args, **kwargs: (
        atomic_torch_save(obj, f) if isinstance(f, str) and not args and not kwargs else torch.save(obj, f, *args, **kwargs)
    )
    module.torch = shim
