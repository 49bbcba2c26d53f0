"""MMHS150K ("MMH"): tweets with an image, three annotators each (Gomez et al., WACV 2020).

`convert` turns the Kaggle upload into MMF's layout, `labels` holds the label rules, `builder` registers the MMF
dataset `mmh` (imported by `mmf_pe.register`; this package itself imports nothing heavy).
"""
