"""mmf-pe: parameter-efficient multimodal hate-speech detection on MMF.

Importing this package is cheap and has no side effects: MMF and torch are imported only by the submodules that
need them. The compatibility layer is activated by `mmf_pe.compat.install()` (run from a `.pth` file at interpreter
start, or by the `mmf_pe` launcher); our MMF components are registered by `mmf_pe.register`.
"""
import os

__version__ = "0.1.0"

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Repository checkout (editable install): holds projects/, datasets/, scripts/.
REPO_ROOT = os.path.dirname(PACKAGE_DIR)
