"""Every command the README and docs/ show parses: `mmf_pe` tools exist and know the options used, `mmf_run` /
`mmf_predict` configs load with MMF's own Configuration and every override names an existing key, launcher lines run
with `--dry-run`, scripts accept their options, make targets exist. Nothing is trained or downloaded."""
import functools
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from mmf_pe import REPO_ROOT

PAGES = [os.path.join(REPO_ROOT, "README.md")] + sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
STARTS = ("mmf_pe ", "mmf_run ", "mmf_predict ", "scripts/", "python scripts/", ".venv/bin/python scripts/", "make ")
PLACEHOLDER = re.compile(r"<[^<>]*>")


def _fenced_lines(text):
    # every fenced block, whatever its language, so a ```json block's closing fence never opens the next one;
    # only shell blocks (or untagged ones) hold commands
    for language, block in re.findall(r"```([\w-]*)\n(.*?)```", text, flags=re.S):
        if language not in ("", "bash", "sh", "console"):
            continue
        block = block.replace("\\\n", " ")
        loop = re.search(r"for (\w+) in ([^;]+); do[^\n]*\n(.*?)\ndone", block, flags=re.S)
        if loop:
            var, values, body = loop.groups()
            expanded = "\n".join(body.replace(f"${var}", value) for value in values.split())
            block = block.replace(loop.group(0), expanded)
        for line in block.splitlines():
            yield line.split("  #")[0].split(" # ")[0].strip()


def _inline_commands(text):
    for span in re.findall(r"`([^`\n]+)`", text):
        if span.startswith(STARTS) and len(span.split()) > 1:
            yield span.strip()


def documented_commands():
    found = {}
    for page in PAGES:
        text = open(page, encoding="utf-8").read()
        for line in list(_fenced_lines(text)) + list(_inline_commands(text)):
            if line.startswith(STARTS):
                found.setdefault(line, os.path.relpath(page, REPO_ROOT))
    return sorted(found.items())


COMMANDS = documented_commands()


def _words(command):
    words = shlex.split(PLACEHOLDER.sub("X", command.replace("[", " ").replace("]", " ").replace("|", " ")))
    return [w for w in words if w not in ("...", "&&") and not w.startswith("$")]


@functools.lru_cache(maxsize=None)
def _help(*argv):
    result = subprocess.run(list(argv) + ["--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} --help failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _check_options(words, help_text, command):
    for word in words:
        if word.startswith("--"):
            option = word.split("=")[0]
            assert option in help_text, f"{command!r}: option {option} is not in its --help"


def test_docs_show_commands():
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize("command,page", [c for c in COMMANDS if c[0].startswith("mmf_pe ")], ids=lambda c: str(c)[:60])
def test_mmf_pe_tool_command_parses(command, page):
    from mmf_pe.cli import TOOLS

    words = _words(command)
    tool = words[1]
    assert tool in TOOLS or tool in ("-h", "--help"), f"{page}: `{command}` names an unknown tool {tool!r}"
    if tool in ("run", "predict"):
        return  # checked with the mmf_run lines
    _check_options(words[2:], _help(sys.executable, "-m", "mmf_pe.cli", tool), command)


@pytest.mark.parametrize("command,page", [c for c in COMMANDS if c[0].startswith(("scripts/", "python scripts/",
                                                                                    ".venv/bin/python scripts/"))],
                         ids=lambda c: str(c)[:60])
def test_script_command_parses(command, page):
    words = _words(command)
    if words[0].endswith("python"):
        words = words[1:]
    script = os.path.join(REPO_ROOT, words[0])
    assert os.path.isfile(script), f"{page}: `{command}`: no such script {words[0]}"
    synopsis = "<" in command or "[" in command  # a usage pattern: its options are checked, it is not run
    if script.endswith(".sh") and "train" in os.path.basename(script) and not synopsis:
        argv = ["bash", script] + [w for w in words[1:] if w != "X"]
        result = subprocess.run(argv + (["--dry-run"] if "--dry-run" not in argv else []), capture_output=True,
                                text=True, cwd=REPO_ROOT, timeout=120, env=dict(os.environ, PATH=os.path.dirname(
                                    sys.executable) + os.pathsep + os.environ["PATH"]))
        assert result.returncode == 0, f"{page}: `{command}` --dry-run failed:\n{result.stdout}\n{result.stderr}"
    elif script.endswith(".sh") and "train" in os.path.basename(script):
        _check_options(words[1:], _help("bash", script), command)
    elif script.endswith(".py"):
        _check_options(words[1:], _help(sys.executable, script), command)


@pytest.mark.parametrize("command,page", [c for c in COMMANDS if c[0].startswith("make ")], ids=lambda c: str(c)[:40])
def test_make_target_exists(command, page):
    targets = re.findall(r"^([\w-]+):", open(os.path.join(REPO_ROOT, "Makefile")).read(), flags=re.M)
    assert _words(command)[1] in targets, f"{page}: `{command}`: no such make target"


def test_mmf_run_commands_load_their_configs():
    """All `mmf_run` / `mmf_predict` lines at once, in one fresh interpreter: MMF's Configuration loads each config
    with its overrides (an override of a key the config lacks fails, as on the command line)."""
    lines = [c for c, _ in COMMANDS if c.startswith(("mmf_run ", "mmf_predict ", "mmf_pe run ", "mmf_pe predict "))]
    assert lines
    opts = [[w for w in _words(c)[1 if c.startswith("mmf_") and not c.startswith("mmf_pe") else 2:] if "=" in w]
            for c in lines]
    opts = [o for o in opts if any(w.startswith("config=") for w in o)]  # `mmf_pe run ...` synopses name none
    code = (
        "import argparse, json, sys\n"
        "from mmf.utils.configuration import Configuration\n"
        "from mmf.utils.env import setup_imports\n"
        "setup_imports()\n"
        "bad = []\n"
        "for opts in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        Configuration(argparse.Namespace(opts=opts, config_override=None)).get_config()\n"
        "    except Exception as error:\n"
        "        bad.append(f'{opts}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    import json

    result = subprocess.run([sys.executable, "-c", code, json.dumps(opts)], capture_output=True, text=True,
                            cwd="/", timeout=300, env=dict(os.environ, MMF_DATA_DIR="/nonexistent"))
    assert result.returncode == 0, (
        f"documented mmf_run lines that do not load:\n{result.stdout}\n{result.stderr[-3000:]}")
