"""Commands around runs: `mmf_pe evaluate` (best checkpoint on the test splits), `mmf_pe seeds` (N seeds of a
config)."""
