"""Run from `mmf_pe_compat.pth` at interpreter start: install the compatibility hook, never break the interpreter."""
try:
    from mmf_pe.compat import install

    install()
except Exception as exc:  # pragma: no cover - a broken .pth must not break every Python process
    import sys

    print(f"mmf_pe: compatibility layer not installed: {exc!r}", file=sys.stderr)
