"""Hateful Memes (MMF's own `hateful_memes` dataset): conversion of the files as published into MMF's layout."""
