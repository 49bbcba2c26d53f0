"""Registered MMF trainers of mmf-pe."""
