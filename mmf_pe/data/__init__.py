"""Data helpers shared by datasets: pre-flight checks, MMF's feature LMDB format."""
