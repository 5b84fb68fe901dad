#!/usr/bin/env bash
# The prepared GPU check (issue 15): full-size Qwen2.5-VL-3B + SAM 2 Hiera-Large with random
# weights (built from their configs, nothing downloaded), bf16, on one GPU.
#
#   1. sociogeo.segment per chip and per phase at batch sizes 1, 8 and 32, every answer forced to
#      256 new tokens per stage (random weights never stop by themselves) and replaced by a scripted
#      answer with 3 boxes / 3 points per box, so SAM does real work (bench_segment.py);
#   2. one GRPO step per phase with LoRA, then with full fine-tuning (bench_grpo.py).
#
# Results: $OUT/*.json and *.log (OUT defaults to ./gpu-check). Needs torch + transformers; the
# geospatial wheels a bare GPU machine lacks can be put in .whl/ and are installed first.
# Each part has its own time limit, so a slow part cannot take the others' results with it.
#
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
rm -rf /tmp/site  # a warm machine keeps what an earlier run installed
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SOCIOGEO_CACHE_DIR=${SOCIOGEO_CACHE_DIR:-/tmp/sociogeo-cache} SOCIOGEO_PROGRESS=0
{
    date -u +"%Y-%m-%d %H:%M UTC"
    echo "commit ${COMMIT:-unknown}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/machine.txt"

# a short smoke run first: model build time and one chip at 16 tokens, so a slow machine shows why
timeout "${SMOKE_S:-120}" python3 benchmarks/bench_segment.py --from-config --device cuda --dtype bfloat16 \
    --batch-size 1 --chips 1 --new-tokens 16 --json "$OUT/smoke.json" 2>&1 | tee "$OUT/smoke.log"
timeout "${SEGMENT_S:-300}" python3 benchmarks/bench_segment.py --from-config --device cuda --dtype bfloat16 \
    --batch-size 1 8 32 --chips 2 16 32 --new-tokens 256 --json "$OUT/segment.json" 2>&1 | tee "$OUT/segment.log"
timeout "${GRPO_S:-130}" python3 benchmarks/bench_grpo.py --from-config --device cuda --lora --prompts 4 --group-size 8 \
    --steps 1 --warmup 1 --new-tokens 256 --verbose --json "$OUT/grpo_lora.json" 2>&1 | tee "$OUT/grpo_lora.log"
timeout "${GRPO_S:-130}" python3 benchmarks/bench_grpo.py --from-config --device cuda --prompts 4 --group-size 8 \
    --steps 1 --warmup 1 --new-tokens 256 --gradient-checkpointing --verbose --json "$OUT/grpo_full.json" 2>&1 \
    | tee "$OUT/grpo_full.log"
echo "done"
