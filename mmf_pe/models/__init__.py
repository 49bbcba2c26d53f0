"""Registered MMF models of mmf-pe. Importing a module registers its model."""
