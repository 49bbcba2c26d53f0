"""Keep credentials out of everything a run writes: saved configs, checkpoints, logs and tracker payloads.

Two rules, applied together by `redact` (nested dicts / lists) and `redact_text` (log lines):
- a config key that names a credential (`token`, `secret`, `password`, `passwd`, `passphrase`, `credential(s)`,
  `api_key` / `apikey`, `access_key`, `private_key`, ... as a word of the key: `hf_token`, `WANDB_API_KEY`,
  `admin_password`) has its value replaced by `<redacted>`; words are split at `_`, `-`, `.` and camelCase, so
  `tokenizer_config` or `preflight_feature_key` are not credentials;
- any string holding the value of a secret-looking environment variable (its name contains TOKEN, SECRET, KEY,
  PASSWORD, PASSWD, PASSPHRASE or CREDENTIAL: `WANDB_API_KEY`, `MMF_PE_ADMIN_TOKEN`, `HF_TOKEN`, ...) has that value
  replaced, whatever key it sits under (`${oc.env:WANDB_API_KEY}` resolved into any field). Values shorter than
  `MIN_SECRET_LENGTH` characters are not treated as secrets (they would blank out ordinary words and numbers).
"""
import os
import re

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 8
SECRET_WORDS = {"token", "secret", "secrets", "password", "passwords", "passwd", "passphrase", "credential",
                "credentials", "apikey", "pwd"}
KEY_OWNERS = {"api", "access", "secret", "private", "auth", "client", "admin", "ssh", "signing", "encryption", "wandb",
              "hf", "openai"}
SECRET_ENV_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL", re.IGNORECASE)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def key_words(name):
    """`WANDB_API_KEY` -> [wandb, api, key]; `hfToken` -> [hf, token]."""
    return [word.lower() for word in _WORD.findall(str(name))]


def is_secret_key(name):
    words = key_words(name)
    if any(word in SECRET_WORDS for word in words):
        return True
    return any(word in ("key", "keys") and index > 0 and words[index - 1] in KEY_OWNERS
               for index, word in enumerate(words))


def secret_env_values(environ=None):
    """The values of secret-looking environment variables (longest first, so a value inside another goes second)."""
    environ = os.environ if environ is None else environ
    values = {value for name, value in environ.items()
              if SECRET_ENV_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact_text(text, secrets=None):
    """`text` with every secret environment value replaced."""
    for value in secret_env_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(value, secrets=None):
    """A copy of a plain nested value (dicts, lists, scalars) with both rules applied."""
    secrets = secret_env_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {key: (REDACTED if is_secret_key(key) and item is not None else redact(item, secrets))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item, secrets) for item in value)
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def redacted_config(config):
    """An OmegaConf config's resolved, redacted copy (a new DictConfig; the original is untouched)."""
    from omegaconf import OmegaConf

    return OmegaConf.create(redact(OmegaConf.to_container(config, resolve=True)))
