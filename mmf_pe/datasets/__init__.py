"""Datasets that MMF rc10 does not have, one package each (builder, dataset class, conversion from the source)."""
