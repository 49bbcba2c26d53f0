"""The attacks moved to mmf_pe.utils.attacks (training's `training.augment` draws from them too); this name stays
for callers of `mmf_pe.experiments.attacks`: it is the same module object."""
import sys

from mmf_pe.utils import attacks

sys.modules[__name__] = attacks
