"""An `includes:` entry must name an MMF config file, nothing else.

rc10's `load_yaml` merges whatever an include names: a netrc, `/etc/passwd` or a `.env` file parses as YAML (a
one-key mapping whose key is the whole text), lands in the run's config and from there in `config.yaml`, every
checkpoint and the tracker. `check_included_config` refuses such a file before it is merged, naming it: an included
file must be empty or a mapping whose top-level keys are MMF config sections (the top-level keys of the default
config, plus `includes`). YAML syntax errors are reported by file, line and column only: PyYAML's own message quotes
the offending line, which could be a credential.
"""
import functools
import os
import re

import yaml

from mmf_pe import PACKAGE_DIR

DEFAULT_CONFIG = os.path.join(PACKAGE_DIR, "configs", "defaults.yaml")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


class ConfigIncludeError(ValueError):
    pass


@functools.lru_cache(maxsize=1)
def config_sections():
    """The keys an MMF config may have at its top level."""
    with open(DEFAULT_CONFIG) as f:
        return frozenset(yaml.safe_load(f)) | {"includes"}


def read_include(path):
    """The text of an included file parsed as YAML, errors named by position (never quoting the file)."""
    try:
        with open(path, "rb") as f:
            return yaml.safe_load(f)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigIncludeError(f"included config {path} is not valid YAML{where} ({error.problem})") from None
    except yaml.YAMLError as error:
        raise ConfigIncludeError(f"included config {path} is not valid YAML ({type(error).__name__})") from None


def check_included_config(path):
    """Raise ConfigIncludeError naming `path` unless it is an MMF config (empty, or a mapping of config sections)."""
    content = read_include(path)
    if content is None:
        return
    if not isinstance(content, dict):
        raise ConfigIncludeError(f"included config {path} is not a YAML mapping of config keys (it holds a "
                                 f"{type(content).__name__}); `includes:` may name MMF config files only")
    unknown = [key for key in content if not isinstance(key, str) or key not in config_sections()]
    if unknown:  # a key is named only when it looks like a name: the "key" of a netrc is its whole text
        shown = ", ".join(repr(key) if isinstance(key, str) and NAME.match(key) else "a key that is not a name"
                          for key in unknown[:3])
        raise ConfigIncludeError(
            f"included config {path} is not an MMF config: {len(unknown)} top-level key(s) are not config sections "
            f"({shown}{', ...' if len(unknown) > 3 else ''}; sections: {', '.join(sorted(config_sections()))}). "
            "`includes:` may name MMF config files only")
