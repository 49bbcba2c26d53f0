#!/usr/bin/env bash
# Region features for VisualBERT in MMF's LMDB layout (wrapper around `mmf_pe extract`; all its options pass through).
#
#   scripts/extract_features.sh --images data/hmd/img --out features/detectron.lmdb \
#       --detector vg_frcnn --weights pytorch_model.bin [--device cuda] [--shard 0/4]
#   scripts/extract_features.sh merge --out features/detectron.lmdb shard0.lmdb shard1.lmdb ...
#
# Re-run the same command after an interruption to resume. Exit status 1 if any image failed (see failures.tsv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

if [ "${1:-}" = "merge" ]; then
  shift
  exec "$PYTHON" -m mmf_pe.cli extract-merge "$@"
fi
exec "$PYTHON" -m mmf_pe.cli extract "$@"
