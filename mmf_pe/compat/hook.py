"""The import hook: serves alias modules and runs fixes around the import of specific MMF modules.

Why a `sys.meta_path` finder: `import mmf` eagerly imports every MMF model and builder, so a fix must be in place
before the first `import mmf`, and must not import MMF (or torch) itself. The finder costs nothing for modules it
does not name.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types


class AliasModule(types.ModuleType):
    """A stand-in for a module that moved: attribute access goes to the real module, plus optional extras.

    A proxy (not the real module object) so that the real module's `__spec__`/`__name__` are never rewritten.
    """

    def __init__(self, name, target, extras=None):
        super().__init__(name)
        self.__dict__["_target_name"] = target
        self.__dict__["_extras"] = extras or {}

    def _target(self):
        return importlib.import_module(self.__dict__["_target_name"])

    def __getattr__(self, attr):
        extras = self.__dict__["_extras"]
        if attr in extras:
            return extras[attr]
        return getattr(self._target(), attr)

    def __dir__(self):
        return sorted(set(dir(self._target())) | set(self.__dict__["_extras"]))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, factory):
        self.factory = factory

    def create_module(self, spec):
        return self.factory(spec.name)

    def exec_module(self, module):
        pass


class _PatchingLoader(importlib.abc.Loader):
    """Wraps the real loader of a module: `before` callbacks run before its code, `after` callbacks on the module."""

    def __init__(self, loader, before, after):
        self.loader = loader
        self.before = before
        self.after = after

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        for fix in self.before:
            fix()
        self.loader.exec_module(module)
        for fix in self.after:
            fix(module)

    def __getattr__(self, name):  # get_source, get_filename, is_package ... for tracebacks and pkgutil
        return getattr(self.loader, name)


class CompatFinder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.aliases = {}  # module name -> factory(name) -> module
        self.before = {}  # module name -> [callable()]
        self.after = {}  # module name -> [callable(module)]

    def alias(self, name, factory):
        self.aliases[name] = factory

    def patch(self, name, before=None, after=None):
        if before:
            self.before.setdefault(name, []).append(before)
        if after:
            self.after.setdefault(name, []).append(after)

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.aliases:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(self.aliases[fullname]))
        if fullname not in self.before and fullname not in self.after:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(
                    spec.loader, self.before.get(fullname, []), self.after.get(fullname, [])
                )
                return spec
        return None
