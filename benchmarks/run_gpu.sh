#!/usr/bin/env bash
# All benchmarks on one CUDA GPU (H100 / H200), results under benchmarks/results/gpu/.
# Designed to finish in under 8 minutes on an H100; every section has its own time limit,
# so a slow section is cut (and reported) instead of stalling the rest.
#
#   bash benchmarks/run_gpu.sh             # full run
#   QUICK=1 bash benchmarks/run_gpu.sh     # smoke run: batch 8 only, 2 repeats (about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/gpu
mkdir -p "$OUT"
PY=${PYTHON:-python}
if [[ -z "${PYTHON:-}" && -x /tmp/venv/bin/python ]]; then PY=/tmp/venv/bin/python; fi
QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then BS=8; BS_RETRAIN=8; REP=2; else BS=8,16,32,64; BS_RETRAIN=8,64; REP=5; fi
FAILED=()
T0=$(date +%s)

section() {  # section NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local start rc
  start=$(date +%s)
  echo "=== $name (limit ${limit}s) ==="
  set +e
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  set -e
  grep -v -i "gym\|warn" "$OUT/$name.log" | tail -40 || true
  echo "=== $name: rc $rc, $(( $(date +%s) - start )) s (total $(( $(date +%s) - T0 )) s) ==="
  if [[ $rc -ne 0 ]]; then FAILED+=("$name(rc=$rc)"); fi
}

"$PY" - <<'PYEOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0))
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# 1. supernet: first order, second order, ENAS at every batch size (fp32, ours)
section supernet 170 "$PY" benchmarks/bench_supernet.py --device cuda --batch-sizes "$BS" --repeats "$REP" \
  --out-dir "$OUT"
# 2. the "before" supernet (NNI's cell in NCHW, NNI's step) and mixed precision, first order at batch 8 and 64
section supernet_nni 60 "$PY" benchmarks/bench_supernet.py --device cuda --impl nni --step nni --cases darts-first \
  --batch-sizes "${BS%%,*}$( [[ $QUICK == 1 ]] || echo ,64)" --repeats "$REP" --out-dir "$OUT"
for prec in bf16-mixed 16-mixed; do
  section "supernet_$prec" 45 "$PY" benchmarks/bench_supernet.py --device cuda --precision "$prec" \
    --cases darts-first --batch-sizes "${BS%%,*}$( [[ $QUICK == 1 ]] || echo ,64)" --repeats "$REP" --out-dir "$OUT"
done
section supernet_channels_last 45 "$PY" benchmarks/bench_supernet.py --device cuda --channels-last \
  --cases darts-first --batch-sizes "${BS%%,*}$( [[ $QUICK == 1 ]] || echo ,64)" --repeats "$REP" --out-dir "$OUT"
# 3. retraining and inference of fixed models
section retrain 90 "$PY" benchmarks/bench_retrain.py --device cuda --batch-sizes "$BS_RETRAIN" --repeats "$REP" \
  --out-dir "$OUT"
# 4. a full default DARTS search (synthetic corpus, tiny space, CLI defaults) on the GPU
section search_e2e 150 "$PY" benchmarks/bench_search_e2e.py --device cuda --repeats 1 --out-dir "$OUT"

echo "total $(( $(date +%s) - T0 )) s; results in $OUT"
if [[ ${#FAILED[@]} -gt 0 ]]; then echo "FAILED: ${FAILED[*]}"; exit 1; fi
