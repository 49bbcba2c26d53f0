"""Small helpers shared by the plugin (no MMF imports here)."""
