"""Secrets stay out of run outputs: `includes:` of files that are not MMF configs are refused naming the file; the
redaction rules (keys and secret environment values) for saved configs, logs and tracker payloads. The end-to-end
check (config.yaml, checkpoints, train.log, W&B files of a real run) is test_run.py's tracked run."""
import argparse
import logging
import os

import pytest

from mmf_pe import REPO_ROOT
from mmf_pe.trainers.redaction import RedactingFilter
from mmf_pe.utils.config_files import ConfigIncludeError
from mmf_pe.utils.secrets import is_secret_key, redact

HMD_PE = os.path.join(REPO_ROOT, "projects", "visual_bert_pe", "hmd_pe.yaml")
NETRC = "machine api.wandb.ai\n  login user\n  password netrc-secret-0123456789\n"


def _configuration(config_path):
    from mmf.utils.configuration import Configuration

    args = argparse.Namespace(opts=[f"config={config_path}", "model=visual_bert_pe", "dataset=hateful_memes"],
                              config_override=None)
    return Configuration(args).get_config()


@pytest.mark.parametrize("content, reason", [
    (NETRC, "not a YAML mapping of config keys (it holds a str)"),  # OmegaConf would make it a one-key mapping
    ("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:netrc-secret-0123456789:/usr/sbin\n", "holds a str"),
    ("WANDB_API_KEY=netrc-secret-0123456789\n", "holds a str"),
    ("machine api.wandb.ai: netrc-secret-0123456789\n", "(a key that is not a name"),
    ("api_key: netrc-secret-0123456789\n", "top-level key(s) are not config sections ('api_key'"),
    ("- netrc-secret-0123456789\n", "not a YAML mapping of config keys (it holds a list)"),
    ("key: [netrc-secret-0123456789\n", "not valid YAML at line 2, column 1"),
])
def test_includes_that_are_not_mmf_configs_are_refused_naming_the_file(content, reason, tmp_path):
    secret_file = tmp_path / "credentials"
    secret_file.write_text(content)
    run_config = tmp_path / "run.yaml"
    run_config.write_text(f"includes:\n  - {HMD_PE}\n  - {secret_file}\n")
    with pytest.raises(ConfigIncludeError) as error:
        _configuration(str(run_config))
    message = str(error.value)
    assert f"included config {secret_file} is" in message and reason in message, message
    assert "netrc-secret" not in message


def test_includes_of_mmf_configs_still_merge(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("training:\n  max_updates: 7\n")
    run_config = tmp_path / "run.yaml"
    run_config.write_text(f"includes:\n  - {HMD_PE}\n  - {extra}\n")
    config = _configuration(str(run_config))
    assert config.training.max_updates == 7 and config.model_config.visual_bert_pe.training_mode == "pe"


def test_redaction_rules(monkeypatch):
    monkeypatch.setenv("MMF_PE_ADMIN_TOKEN", "admin-token-value-123")
    monkeypatch.setenv("SOME_KEY", "short")  # under 8 characters: not treated as a secret
    monkeypatch.setenv("PLAIN_HOME_DIR", "/home/someone/files")
    config = {"training": {"wandb": {"api_key": "k-123", "notes": "uses admin-token-value-123 here"},
                           "hf_token": None, "max_tokens": 5, "seed": "short"},
              "dataset_config": {"d": {"processors": {"tokenizer_config": {"type": "/w/bert"}},
                                       "preflight_feature_key": "id", "paths": ["/home/someone/files"]}}}
    assert redact(config) == {
        "training": {"wandb": {"api_key": "<redacted>", "notes": "uses <redacted> here"}, "hf_token": None,
                     "max_tokens": 5, "seed": "short"},
        "dataset_config": {"d": {"processors": {"tokenizer_config": {"type": "/w/bert"}},
                                 "preflight_feature_key": "id", "paths": ["/home/someone/files"]}}}
    for key in ("WANDB_API_KEY", "hfToken", "admin_password", "client_secret", "access_key_id", "credentials"):
        assert is_secret_key(key), key
    for key in ("tokenizer_config", "monitored_key", "max_tokens", "preflight_feature_key", "keys"):
        assert not is_secret_key(key), key


def test_log_records_are_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value-42")
    logger = logging.getLogger("mmf_pe.test_secrets")
    handler = logging.FileHandler(tmp_path / "train.log")
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("key %s in a message", "wandb-secret-value-42")
        logger.warning('{\n    "db_password": "literal-pw",\n    "hf_token": null,\n    "lr": 0.1\n}')
        logger.warning("admin_token: literal-token-2")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "train.log").read_text()
    assert "key <redacted> in a message" in text and '"db_password": "<redacted>"' in text
    assert '"hf_token": null' in text and '"lr": 0.1' in text and "admin_token: <redacted>" in text
    for secret in ("wandb-secret-value-42", "literal-pw", "literal-token-2"):
        assert secret not in text
