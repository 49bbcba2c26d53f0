"""Secrets out of what the `mmf_pe` trainer's run writes (rules: `mmf_pe.utils.secrets`).

- `config.yaml` and the `config` stored in every checkpoint: rc10's `Checkpoint` writes `trainer.config` resolved, so
  the trainer hands it a redacted copy while it builds the checkpointer (`checkpointer_config`); the run itself keeps
  the real values.
- logs: `RedactingFilter` on the handlers of rc10's writer (train.log, the timestamped log, stdout) rewrites every
  record: secret environment values anywhere, and the values of secret-looking keys in the `"key": value` / `key: value`
  text that `training.log_detailed_config=true` prints.
- tracker payloads: `mmf_pe.tracking.run_info.config_to_dict`.
"""
import contextlib
import logging
import re

from mmf_pe.utils.secrets import REDACTED, is_secret_key, redact_text, redacted_config

# "name": value  /  name: value   (JSON dumps and YAML lines of a config)
_KEY_VALUE = re.compile(r"""(?P<key>"[^"\n]+"|[A-Za-z_][\w.-]*)(?P<sep>\s*:\s*)"""
                        r"""(?P<value>"(?:[^"\\\n]|\\.)*"|[^,\n{}\[\]]+)""")


def redact_log_text(text):
    def replace(match):
        if not is_secret_key(match.group("key").strip('"')) or match.group("value").strip() in ("null", "None"):
            return match.group(0)
        value = match.group("value")
        return match.group("key") + match.group("sep") + (f'"{REDACTED}"' if value.startswith('"') else REDACTED)

    return _KEY_VALUE.sub(replace, redact_text(text))


class RedactingFilter(logging.Filter):
    """Rewrites each log record's message with secrets replaced (it never drops a record)."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact_log_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(writer):
    """Put a RedactingFilter on every handler of rc10's writer (a `mmf.utils.logger.Logger`), once."""
    loggers = [getattr(writer, name, None) for name in ("_logger", "_file_only_logger", "_warnings_logger")]
    for logger in [lg for lg in loggers if lg is not None] + [logging.getLogger("py.warnings")]:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


@contextlib.contextmanager
def checkpointer_config(trainer):
    """While rc10 builds the trainer's Checkpoint (which keeps `trainer.config` and saves it resolved), the trainer's
    config is a resolved, redacted copy; afterwards the real config is back on the trainer."""
    real = trainer.config
    trainer.config = redacted_config(real)
    try:
        yield
    finally:
        trainer.config = real
