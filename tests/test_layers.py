"""One direction of dependencies: foundations -> models -> MMF integration -> apps, no import circle between files,
and a PE core (`mmf_pe.tuners`) that imports without MMF."""
import ast
import os
import subprocess
import sys

import pytest

from mmf_pe import PACKAGE_DIR

# Tier of each top-level part of mmf_pe; a file may import its own tier and those below, never above.
TIERS = {
    1: ["mmf_pe", "mmf_pe.tuners", "mmf_pe.utils", "mmf_pe.compat", "mmf_pe.metrics", "mmf_pe.data",
        "mmf_pe.ocr"],
    2: ["mmf_pe.models"],
    # data.checks: the trainer's pre-flight over MMF dataset configs (names the zoo command that fetches a file)
    3: ["mmf_pe.trainers", "mmf_pe.datasets", "mmf_pe.launch", "mmf_pe.tracking", "mmf_pe.register",
        "mmf_pe.mmf_patches", "mmf_pe.data.checks"],
    # ocr.batch: `mmf_pe ocr` reads images as `mmf_pe extract` does; testing: generated data and tiny models (tests,
    # benchmarks, the demo)
    4: ["mmf_pe.cli", "mmf_pe.demo", "mmf_pe.experiments", "mmf_pe.reporting", "mmf_pe.tools", "mmf_pe.extraction",
        "mmf_pe.serve", "mmf_pe.ocr.batch", "mmf_pe.testing"],
}
# Plugin discovery, the compatibility layer's only upward edges: MMF's setup_imports() imports our components (F10),
# and the plugin's own patches on MMF modules without an extension point go on the same import hook.
UPWARD_ALLOWED = {("mmf_pe.compat.fixes", "mmf_pe.register"), ("mmf_pe.compat", "mmf_pe.mmf_patches")}
MMF_PACKAGES = ("mmf", "mmf_cli")


def _modules():
    root = os.path.dirname(PACKAGE_DIR)
    modules = {}
    for directory, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                modules[module.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _imported_names(module, path):
    """Every module name an import statement (module level or in a function) or import_module("...") names."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = package
                for _ in range(node.level - 1):
                    here = here.rpartition(".")[0]
                base = f"{here}.{base}".rstrip(".")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == \
                "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            yield node.args[0].value


def _resolve(name):
    """The mmf_pe file a dotted name lands in (`pkg.mod.func` -> `pkg.mod`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph():
    graph = {}
    for module, path in MODULES.items():
        targets = {_resolve(n) for n in _imported_names(module, path) if n.split(".")[0] == "mmf_pe"}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def _tier(module):
    matches = [(len(prefix), tier) for tier, prefixes in TIERS.items() for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module}: in no tier; add its part of the package to TIERS in {__file__}"
    return max(matches)[1]


def _circles(graph):
    """Strongly connected components of more than one file (Tarjan, iterative)."""
    index, low, on_stack, stack, circles, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(component)
    return circles


def test_no_import_circle_between_files():
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in circles)


def test_the_circle_checker_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_imports_point_down_the_tiers():
    upward = [
        f"{module} (tier {_tier(module)}) imports {target} (tier {_tier(target)})"
        for module, targets in _graph().items() for target in sorted(targets)
        if _tier(target) > _tier(module) and (module, target) not in UPWARD_ALLOWED
    ]
    assert not upward, "\n".join(upward)


def test_only_the_demo_imports_the_test_data_generators():
    """mmf_pe.testing (generated data, tiny models) serves tests, benchmarks and the demo: no training, evaluation
    or serving module imports it."""
    found = [f"{module} imports {target}" for module, targets in _graph().items() for target in sorted(targets)
             if target.startswith("mmf_pe.testing") and not module.startswith(("mmf_pe.testing", "mmf_pe.demo"))]
    assert not found, found


def test_foundations_name_no_mmf_module():
    """Tier 1 never imports MMF itself (the compat hook names MMF modules as strings only)."""
    found = [
        f"{module}: {name}" for module, path in MODULES.items() if _tier(module) == 1
        for name in _imported_names(module, path) if name.split(".")[0] in MMF_PACKAGES
    ]
    assert not found, found


@pytest.mark.parametrize("module", ["mmf_pe.tuners", "mmf_pe.tuners.export"])
def test_the_pe_core_imports_without_mmf(module):
    code = (f"import sys, {module}\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mmf', 'mmf_cli'))\n"
            "assert not loaded, loaded\n"
            "from mmf_pe.tuners import PE_METHODS\n"
            "assert {'paper', 'pfeiffer', 'houlsby', 'lora', 'ia3'} <= set(PE_METHODS), PE_METHODS\n")
    env = dict(os.environ, MMF_PE_COMPAT="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_dataset_knowledge_lives_with_the_dataset():
    """Hints and default test splits come from each dataset's own YAML; the generic code names no dataset."""
    from omegaconf import OmegaConf

    from mmf_pe.data.checks import data_hints
    from mmf_pe.experiments.evaluate import test_splits

    for path in ("data/checks.py", "experiments/evaluate.py"):
        source = open(os.path.join(PACKAGE_DIR, path)).read()
        assert "hateful_memes" not in source and "mmh" not in source, path
    hm = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "mmf", "datasets", "hateful_memes", "defaults.yaml"))
    mmh = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "datasets", "mmh", "defaults.yaml"))
    assert "mmf_convert_hm" in data_hints(hm.dataset_config.hateful_memes)["annotations"]
    assert "convert-mmh" in data_hints(mmh.dataset_config.mmh)["annotations"]
    config = OmegaConf.merge(hm, mmh)
    assert dict(test_splits(config, "hateful_memes")) == {
        "test_seen": ["hateful_memes/defaults/annotations/test_seen.jsonl"],
        "test_unseen": ["hateful_memes/defaults/annotations/test_unseen.jsonl"]}
    assert dict(test_splits(config, "mmh")) == {"test": ["mmh/defaults/annotations/test.jsonl"]}


APPS = ("mmf_pe.serve", "mmf_pe.experiments", "mmf_pe.tools", "mmf_pe.demo", "mmf_pe.cli")
CONTRACT = "mmf_pe.models.contract"


def _family_internals_imported(graph):
    """App modules that import a model module other than the contract (a family's internals)."""
    return [f"{module} imports {target}" for module, targets in sorted(graph.items())
            if module == "mmf_pe.cli" or module.startswith(tuple(f"{app}." for app in APPS)) or module in APPS
            for target in sorted(targets) if target.startswith("mmf_pe.models") and target != CONTRACT]


def test_apps_know_the_models_only_through_the_contract():
    """serve, experiments, tools, demo and the CLI build, export and score models through mmf_pe.models.contract;
    no family's key names, sample fields or tokenisation outside its folder (docs/model-contract.md)."""
    found = _family_internals_imported(_graph())
    assert not found, "\n".join(found)


def test_the_contract_checker_finds_a_family_import():
    graph = {"mmf_pe.serve.engine": {CONTRACT, "mmf_pe.models.frozen_vl.family"},
             "mmf_pe.models.x": {"mmf_pe.models.y"}}
    assert _family_internals_imported(graph) == ["mmf_pe.serve.engine imports mmf_pe.models.frozen_vl.family"]
