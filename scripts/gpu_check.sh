#!/usr/bin/env bash
# The prepared GPU check (docs/gpu.md): whoever first has a CUDA GPU runs it (about 8 minutes on one GPU, measured
# estimate in docs/gpu.md) and pastes its table into docs/benchmarks.md.
#   scripts/gpu_check.sh [--dry-run] [--device cuda|cuda:N] [--out logs/gpu_check]
# 1. FC / Full / PE training steps through the real `mmf_run` on tiny generated data, in fp32, bf16 and fp16;
# 2. scripts/benchmark_pe.py on the GPU at bert-base size (PE / Full step time and peak CUDA memory, fp32 and bf16);
# 3. scripts/benchmark_serve.py against `mmf_pe serve --device cuda` (features, images through the detector, CLIP).
# --dry-run prints every command it would run (and the configs it would write) and runs nothing; it works anywhere.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
MMF_RUN="$(dirname "$PYTHON")/mmf_run"
[ -x "$MMF_RUN" ] || MMF_RUN="mmf_run"
DRY=0
DEVICE="cuda"
OUT="$ROOT/logs/gpu_check"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --device) DEVICE="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in
  cuda) ;;
  cuda:[0-9]*) export CUDA_VISIBLE_DEVICES="${DEVICE#cuda:}"; DEVICE="cuda" ;;
  *) echo "gpu_check.sh: --device must be cuda or cuda:N, got $DEVICE" >&2; exit 2 ;;
esac
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DATA="$OUT/data"
ROWS=()

if [ "$DRY" = 0 ]; then
  if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA GPU visible (torch.cuda.is_available() is False); --dry-run shows the commands" >&2
    exit 2
  fi
  mkdir -p "$OUT/configs" "$OUT/runs" "$OUT/logs"
fi

check() {  # check <name> <command...>: run it (log under $OUT/logs), record status and seconds
  local name="$1"; shift
  local log="$OUT/logs/$(printf %s "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
  if [ "$DRY" = 1 ]; then
    printf '[dry-run] %s:' "$name"; printf ' %q' "$@"; printf '\n'
    ROWS+=("| $name | not run (dry run) | - | - |")
    return 0
  fi
  echo "[gpu_check] $name ..." >&2
  local start end status
  start=$(date +%s)
  if "$@" >"$log" 2>&1; then status="ok"; else status="FAILED"; fi
  end=$(date +%s)
  ROWS+=("| $name | $status | $((end - start)) | ${log#"$ROOT"/} |")
}

write_config() {  # write_config <mode>: a run config = the project's config + its tiny.yaml
  local path="$OUT/configs/run_hmd_$1.yaml"
  local text="includes:
  - $ROOT/projects/visual_bert_pe/hmd_$1.yaml
  - $ROOT/projects/visual_bert_pe/tiny.yaml"
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] write $path:"; echo "$text" | sed 's/^/    /'
  else
    echo "$text" >"$path"
  fi
}

[ "$DRY" = 1 ] || ROWS+=("| GPU | $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 || echo unknown) | - | - |")
check "tiny data" "$PYTHON" -c "from mmf_pe.testing.tiny_hmd import make_tiny_hmd; make_tiny_hmd('$DATA')"
for mode in fc full pe; do
  write_config "$mode"
done
for precision in fp32 bf16 fp16; do
  for mode in fc full pe; do
    check "mmf_run $mode $precision" env MMF_DATA_DIR="$DATA" "$MMF_RUN" config="$OUT/configs/run_hmd_$mode.yaml" \
      model=visual_bert_pe dataset=hateful_memes env.save_dir="$OUT/runs/${mode}_$precision" \
      training.device=cuda training.precision="$precision" training.max_updates=10 \
      training.evaluation_interval=10 training.checkpoint_interval=10 training.num_workers=0
  done
done
check "benchmark_pe bert-base fc/full/paper fp32+bf16" "$PYTHON" "$ROOT/scripts/benchmark_pe.py" --device cuda \
  --rows fc full paper --precisions fp32 bf16 --batch 32 --steps 10 --warmup 3 --json "$OUT/benchmark_pe.json"
check "benchmark_serve --device cuda" "$PYTHON" "$ROOT/scripts/benchmark_serve.py" --device cuda --requests 48 \
  --image-requests 16 --out "$OUT/serve"

echo
echo "| check | result | seconds | log |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
if [ "$DRY" = 0 ]; then
  echo
  echo "benchmark_pe (bert-base, GPU):"; grep '^|\|^Targets\|^batch' "$OUT/logs/benchmark_pe_bert-base_fc_full_paper_fp32_bf16.log" || true
  echo "benchmark_serve (--device cuda):"; cat "$OUT/serve/table.md" 2>/dev/null || true
fi
