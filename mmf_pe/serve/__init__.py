"""`mmf_pe serve`: one frozen VisualBERT base in memory, many exported adapters, a meme in and a score out.

An app: it imports models, tuners and extraction; nothing in the package imports it. See docs/serving.md.
"""
