"""mmf-pe: parameter-efficient VisualBERT (and friends) for hateful-meme detection, as an MMF plugin.

MMF itself (`mmf==1.0.0rc10`) is *not* an install requirement: its own pins (torch 1.5, transformers 2.3, ...) cannot
be resolved on a modern stack. It is installed with `pip install --no-deps mmf==1.0.0rc10` by scripts/setup_env.sh.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_NAME = "mmf_pe_compat.pth"


def _requirements(name):
    with open(os.path.join(HERE, name)) as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


class BuildPyWithPth(build_py):
    """Ship the .pth file that activates the compatibility layer before the first `import mmf`."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, "mmf_pe", "compat", PTH_NAME), os.path.join(self.build_lib, PTH_NAME))


setup(
    name="mmf-pe",
    version="0.1.0",
    description="Parameter-efficient fine-tuning for multimodal hate-speech detection, as an MMF plugin",
    python_requires=">=3.10.12,!=3.11.0,!=3.11.1,!=3.11.2,!=3.11.3,<3.13",  # tarfile filter="data"
    packages=find_packages(include=["mmf_pe", "mmf_pe.*"]),
    package_data={"mmf_pe": ["configs/**/*.yaml", "configs/*.yaml", "compat/*.pth", "demo/fonts/*",
                          "tuners/*/defaults.yaml"]},
    install_requires=_requirements("requirements.txt"),
    extras_require={"dev": _requirements("requirements-dev.txt")},
    cmdclass={"build_py": BuildPyWithPth},
    entry_points={"console_scripts": ["mmf_pe=mmf_pe.cli:main"]},
)
