"""One test per compatibility fix: the failure without it (a subprocess with that fix left out) and the behaviour with
it (this process, where the layer is active). See patches/README.md."""
import argparse
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mmf_pe import REPO_ROOT

CONFIG_SNIPPET = """
import argparse, os
from mmf.utils.configuration import Configuration
config = Configuration(argparse.Namespace(opts=["model=visual_bert_pe", "dataset=hateful_memes"] + {opts!r},
                                          config_override=None)).get_config()
"""


def run_without(fix_id, code, cwd=None, env=None):
    """Run `code` in a fresh interpreter with one fix left out; returns (returncode, output)."""
    environment = dict(os.environ, MMF_PE_COMPAT_SKIP=fix_id, **(env or {}))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd or REPO_ROOT, env=environment,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    return result.returncode, result.stdout


def assert_fails_without(fix_id, code, expected, **kwargs):
    returncode, output = run_without(fix_id, code, **kwargs)
    assert returncode != 0 and expected in output, output[-3000:]


def configuration(opts):
    from mmf.utils.configuration import Configuration

    opts = ["model=visual_bert_pe", "dataset=hateful_memes"] + list(opts)
    return Configuration(argparse.Namespace(opts=opts, config_override=None)).get_config()


def test_f1_transformers_old_module_names():
    assert_fails_without("F1", "import transformers.modeling_bert", "No module named 'transformers.modeling_bert'")
    import transformers.models.bert.modeling_bert as real
    from transformers.modeling_bert import BertEmbeddings, BertLayerNorm
    from transformers.tokenization_auto import AutoTokenizer

    assert BertLayerNorm is torch.nn.LayerNorm and BertEmbeddings is real.BertEmbeddings
    assert AutoTokenizer.__name__ == "AutoTokenizer"
    assert real.__name__ == "transformers.models.bert.modeling_bert"  # the real module is not re-initialised


def test_f2_adamw():
    assert_fails_without("F2", "import mmf", "cannot import name 'AdamW'")
    import mmf.modules.optimizers  # noqa: F401
    from mmf.common.registry import registry
    from transformers.optimization import AdamW

    assert registry.get_optimizer_class("adam_w") is AdamW and issubclass(AdamW, torch.optim.AdamW)
    AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, correct_bias=True)
    with pytest.raises(ValueError, match="correct_bias"):
        AdamW([torch.nn.Parameter(torch.zeros(1))], correct_bias=False)


def test_f3_demjson():
    assert_fails_without("F3", "import mmf", "No module named 'demjson'")
    import demjson

    assert demjson.decode('{"training": {"batch_size": 4}}') == {"training": {"batch_size": 4}}
    from mmf.utils.configuration import Configuration

    args = argparse.Namespace(opts=["model=visual_bert_pe", "dataset=hateful_memes"],
                              config_override="{training: {batch_size: 4}}")  # MMF's --config_override uses demjson
    assert Configuration(args).get_config().training.batch_size == 4


@pytest.mark.skipif(any(os.path.isdir(os.path.join(p, "torchtext")) for p in sys.path if p),
                    reason="a real torchtext is installed")
def test_f4_torchtext_stub():
    assert_fails_without("F4", "import mmf", "No module named 'torchtext'")
    from torchtext import vocab

    with pytest.raises(RuntimeError, match="torchtext is not available"):
        vocab.GloVe()


def test_f5_default_config_and_project_paths(tmp_path):
    assert_fails_without("F5", CONFIG_SNIPPET.format(opts=[]), "defaults.yaml")
    from mmf.utils.configuration import get_default_config_path, load_yaml

    assert get_default_config_path().startswith(os.path.join(REPO_ROOT, "mmf_pe", "configs"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        config = load_yaml("projects/visual_bert_pe/hmd_pe.yaml")  # from a directory that is not the checkout
    finally:
        os.chdir(cwd)
    assert config.model_config.visual_bert_pe.training_mode == "pe"
    assert config.optimizer.params.lr == 5e-05  # from hmd_base.yaml via includes:
    assert load_yaml("configs/zoo/datasets.yaml") == {}


def test_f6_env_resolver(tmp_path):
    config_file = tmp_path / "env.yaml"
    config_file.write_text("training:\n  experiment_name: ${env:MMF_PE_TEST_NAME,fallback}\n")
    code = CONFIG_SNIPPET.format(opts=[f"config={config_file}"]) + "print(config.training.experiment_name)"
    assert_fails_without("F6", code, "Unsupported interpolation type env")
    os.environ["MMF_PE_TEST_NAME"] = "from_env"
    try:
        assert configuration([f"config={config_file}"]).training.experiment_name == "from_env"
    finally:
        del os.environ["MMF_PE_TEST_NAME"]


def test_f7_missing_keys_only_for_mmf_callers():
    assert_fails_without("F7", CONFIG_SNIPPET.format(opts=[]), "Missing key")
    config = configuration([])
    assert config.model == "visual_bert_pe"
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError

    # our code (and users') keeps omegaconf 2.3's strictness
    with pytest.raises(ConfigAttributeError):
        OmegaConf.create({"a": 1}).b


def test_f8_logger_mapping(tmp_path):
    code = CONFIG_SNIPPET.format(opts=[f"env.save_dir={tmp_path}"]) + textwrap.dedent("""
        from mmf.common.registry import registry
        from mmf.utils.logger import Logger
        registry.register("config", config)
        Logger(config).log_progress({"progress": "1/1"})
        print("logged")
    """)
    assert_fails_without("F8", code, "has no attribute 'Mapping'")
    returncode, output = run_without("", code)
    assert returncode == 0 and "logged" in output, output[-2000:]


def test_f9_checkpoint_save_config(tmp_path):
    """F9: Checkpoint.save_config works (no DictConfig.pretty), written atomically."""
    import mmf.utils.checkpoint as checkpoint
    from omegaconf import OmegaConf

    holder = type("Holder", (), {})()
    holder.ckpt_foldername = str(tmp_path)
    holder.config = OmegaConf.create({"a": {"b": 1}, "c": "${a.b}"})
    checkpoint.Checkpoint.save_config(holder)
    assert OmegaConf.load(tmp_path / "config.yaml") == {"a": {"b": 1}, "c": 1}
    code = textwrap.dedent(f"""
        import mmf.utils.checkpoint as c
        from omegaconf import OmegaConf
        h = type("H", (), {{}})(); h.ckpt_foldername = {str(tmp_path)!r}; h.config = OmegaConf.create({{"a": 1}})
        c.Checkpoint.save_config(h)
    """)
    assert_fails_without("F9", code, "pretty")


def test_f10_registered_without_user_dir(tmp_path):
    code = textwrap.dedent("""
        from mmf.common.registry import registry
        from mmf.utils.env import setup_imports
        setup_imports()
        assert registry.get_model_class("visual_bert_pe") is not None, "visual_bert_pe not registered"
        assert registry.get_trainer_class("mmf_pe") is not None
    """)
    assert_fails_without("F10", code, "visual_bert_pe not registered", cwd=str(tmp_path), env={"MMF_USER_DIR": ""})
    returncode, output = run_without("", code, cwd=str(tmp_path), env={"MMF_USER_DIR": ""})
    assert returncode == 0, output[-2000:]


def test_launcher_activates_the_layer_where_pth_files_are_skipped(tmp_path):
    """`MMF_PE_COMPAT=0` keeps the .pth from activating the layer (as for `python -S`); `mmf_pe` still works."""
    env = dict(os.environ, MMF_PE_COMPAT="0")
    plain = subprocess.run([sys.executable, "-c", "import mmf"], env=env, text=True, capture_output=True, cwd=tmp_path)
    assert plain.returncode != 0 and "demjson" in plain.stderr
    launcher = subprocess.run([sys.executable, "-m", "mmf_pe.cli", "run", "--help"], env=env, text=True,
                              capture_output=True, cwd=tmp_path)
    assert "usage" in (launcher.stdout + launcher.stderr).lower(), launcher.stderr[-2000:]
    assert "demjson" not in launcher.stderr


def test_f15_yaml_booleans_on_the_command_line():
    code = CONFIG_SNIPPET.format(opts=["checkpoint.resume=false"]) + textwrap.dedent("""
        assert config.checkpoint.resume is False, repr(config.checkpoint.resume)
    """)
    assert_fails_without("F15", code, "'false'")
    config = configuration(["checkpoint.resume=false", "training.wandb.enabled=TRUE", "checkpoint.resume_file=null",
                            "training.batch_size=4", "training.experiment_name=falsehood"])
    assert config.checkpoint.resume is False and config.training.wandb.enabled is True
    assert config.checkpoint.resume_file is None and config.training.batch_size == 4
    assert config.training.experiment_name == "falsehood"


def test_every_fix_is_indexed_and_tested():
    """patches/README.md has a row per version fix (first table) and per kept behaviour patch (second table), and a
    test names each: the index cannot fall behind the code."""
    import glob
    import re

    from mmf_pe.compat import FIX_IDS
    from mmf_pe.mmf_patches import PATCH_IDS

    index = open(os.path.join(REPO_ROOT, "patches", "README.md")).read()
    version, kept = index.split("## Behaviour kept as patches")
    assert re.findall(r"^\| (F\d+) \|", version, flags=re.M) == FIX_IDS
    assert re.findall(r"^\| (F\d+) \|", kept, flags=re.M) == PATCH_IDS
    assert not set(FIX_IDS) & set(PATCH_IDS)
    tests = "".join(open(p).read() for p in glob.glob(os.path.join(REPO_ROOT, "tests", "**", "*.py"), recursive=True))
    untested = [f for f in FIX_IDS + PATCH_IDS if not re.search(rf"def test_{f.lower()}_|\"{f}\"", tests)]
    assert not untested, untested


def test_the_compat_layer_holds_version_fixes_only():
    """Behaviour the plugin adds is the plugin's: no compat module names a checkpoint, reader or converter patch."""
    from mmf_pe.compat import build_finder

    finder = build_finder()
    patched = set(finder.before) | set(finder.after)
    assert "mmf.utils.checkpoint" in patched  # F9 (DictConfig.pretty) only
    assert finder.after["mmf.utils.checkpoint"][0].__module__ == "mmf_pe.compat.fixes"
    assert len(finder.after["mmf.utils.checkpoint"]) == 1
    readers = finder.after["mmf.datasets.databases.readers.feature_readers"]
    assert readers and all(patch.__module__ == "mmf_pe.data.pipeline_patches" for patch in readers)
    skipped = build_finder({"F20", "F17"})
    assert "mmf_cli.hm_convert" not in skipped.after and len(skipped.after[
        "mmf.datasets.databases.readers.feature_readers"]) == len(readers) - 1
    with pytest.raises(ValueError, match="unknown fix ids \\['F25'\\]"):
        build_finder({"F25"})  # moved into the mmf_pe trainer's checkpoint class
