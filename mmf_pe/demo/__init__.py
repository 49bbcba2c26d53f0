"""The README's main job: an end-to-end run on data the project generates itself (no user data, offline)."""
