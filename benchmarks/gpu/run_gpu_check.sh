#!/usr/bin/env bash
# One bounded check of vlal's faiss GPU path (issue 14, item 5) on a CUDA machine.
#
#   OUT=results-dir WHL=wheels-dir BUDGET_S=540 bash benchmarks/gpu/run_gpu_check.sh
#
# With SITE=<dir>: use the faiss stack unpacked there (make_cuvs_pack.sh; CUDA 13, sm_90).
# Otherwise WHL holds the wheels the machine lacks: faiss_gpu_cu12 and nvidia_cuda_runtime_cu12 for
# its Python (and, optionally, prebuilt shim/libcublas.so.12 + shim/libcublasLt.so.12).
# Steps, each bounded so that the whole run ends inside BUDGET_S seconds:
#   1. install the wheels into /tmp/site; where the machine has only CUDA 13's cuBLAS,
#      load faiss' cuBLAS 12 calls through the forwarding shim (cublas12_shim.c);
#   2. tests/test_gpu.py (GPU results against the CPU path);
#   3. benchmarks/bench_select.py at n = 10^6 (b = 1 %), CEC with use_gpu="auto";
#   4. the same at n = 10^7 with b = 0.1 % (= 10^4, the budget of the 10^7 CPU row); its pool
#      is generated in the background from the start (~4 min on one core);
#   5. while waiting for that pool: the CPU test files with use_gpu="auto" now on the GPU.
# Everything it reports lands in $OUT (logs, select_gpu.{md,json}).
set -u
START=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
OUT=${OUT:-/tmp/vlal-gpu-out}
WHL=${WHL:-.whl}
POOLS=${POOLS:-/tmp/vlal-pools}
N1=${N1:-1000000}; N2=${N2:-10000000}   # smaller values give a dry run of the script
mkdir -p "$OUT" "$POOLS"
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
log() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$OUT/steps.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1
CUBLAS13=$(find ${CUBLAS_DIRS:-/opt /usr/local /usr/lib} -name 'libcublas.so.13*' 2>/dev/null | head -1)
if [ -n "${SITE:-}" ]; then
    # A faiss-gpu-cuvs stack unpacked in $SITE (see README.md here): CUDA 13, built for sm_90.
    [ -n "$CUBLAS13" ] || { log "SITE given but no libcublas.so.13 on this machine"; exit 1; }
    export PYTHONPATH=$SITE:$PYTHONPATH
    export LD_LIBRARY_PATH=$(dirname "$CUBLAS13"):${LD_LIBRARY_PATH:-}
    log "faiss from $SITE, CUDA 13 libraries from $(dirname "$CUBLAS13")"
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHL"/*.whl || { log "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$PYTHONPATH
    export _FAISS_WHEEL_DISABLE_CUDA_PRELOAD=1   # we set the library path ourselves
    CUDART12=$(dirname "$(find /tmp/site -name 'libcudart.so.12' | head -1)")
    CUBLAS12=$(find ${CUBLAS_DIRS:-/opt /usr/local /usr/lib} -name 'libcublas.so.12*' 2>/dev/null | head -1)
    if [ -n "$CUBLAS12" ]; then
        LIBS=$(dirname "$CUBLAS12")
        log "cuBLAS 12 found: $CUBLAS12"
    else
        [ -n "$CUBLAS13" ] || { log "neither libcublas.so.12 nor .13 found"; exit 1; }
        SHIM=/tmp/cublas12-shim
        mkdir -p $SHIM
        here=$(dirname "$0")
        if command -v gcc >/dev/null; then
            gcc -shared -fPIC -O2 -Wl,--version-script="$here/cublas12.map" -Wl,-soname,libcublas.so.12 \
                -o $SHIM/libcublas.so.12 "$here/cublas12_shim.c" -ldl &&
            echo 'void vlal_cublaslt12_placeholder(void) {}' >$SHIM/lt.c &&
            gcc -shared -fPIC -Wl,-soname,libcublasLt.so.12 -o $SHIM/libcublasLt.so.12 $SHIM/lt.c
        else
            cp "$WHL"/shim/libcublas*.so.12 $SHIM/
        fi
        LIBS=$SHIM:$(dirname "$CUBLAS13")
        log "only CUDA 13 cuBLAS ($CUBLAS13): faiss' cuBLAS 12 calls go through the shim in $SHIM"
    fi
    export LD_LIBRARY_PATH=$LIBS:$CUDART12:${LD_LIBRARY_PATH:-}
fi

python3 - <<'EOF' 2>&1 | tee "$OUT/sanity.txt"
import numpy as np, faiss, vlal
from vlal import _faiss
print("faiss", faiss.__version__, "GPUs", faiss.get_num_gpus(), "vlal", vlal.__version__)
x = np.random.default_rng(0).random((20000, 128), dtype=np.float32)
dg, ig = _faiss.KnnIndex(x, "exact", use_gpu=True).search(x[:500], 10)
dc, ic = _faiss.KnnIndex(x, "exact", use_gpu=False).search(x[:500], 10)
print("GPU vs CPU exact kNN: max |d| diff", float(np.abs(dg - dc).max()), "same ids", float((ig == ic).mean()))
EOF
[ "${PIPESTATUS[0]}" = 0 ] || { log "faiss GPU sanity check failed"; [ "${REQUIRE_GPU:-1}" = 0 ] || exit 1; }

log "generating the 10^7 pool in the background"
( python3 -c "
from pathlib import Path; import bench_select as b
b.write_pool($N2, Path('$POOLS'), seed=0)" >"$OUT/pool_1e7.log" 2>&1; echo done >"$POOLS/.ready" ) &

log "tests/test_gpu.py"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.txt" | tail -15

log "bench_select n=10^6"
timeout $(($(left) - 200)) python3 benchmarks/bench_select.py --sizes $N1 --methods cec --pools synthetic \
    --no-ann --out "$OUT" --prefix select_gpu --data-dir "$POOLS" 2>&1 | tee "$OUT/bench_1e6.log" | tail -4

if [ ! -f "$POOLS/.ready" ] && [ "$(left)" -gt 240 ]; then
    log "while the 10^7 pool is generated: CPU test files with use_gpu='auto' (now the GPU)"
    timeout $(($(left) - 230)) python3 -m pytest -q -p no:cacheprovider -x tests/test_scale.py \
        tests/test_core_strategies.py tests/test_scoring.py 2>&1 | tee "$OUT/pytest_auto.txt" | tail -8
fi
while [ ! -f "$POOLS/.ready" ] && [ "$(left)" -gt 150 ]; do sleep 2; done
log "pool: $(cat "$OUT/pool_1e7.log" | tail -2)"
if [ -f "$POOLS/.ready" ]; then
    log "bench_select n=10^7, b = 0.1 %"
    timeout $(($(left) - 5)) python3 benchmarks/bench_select.py --sizes $N2 --budget-frac 0.001 \
        --methods cec --pools synthetic --no-ann --append --reuse-pools --out "$OUT" --prefix select_gpu \
        --data-dir "$POOLS" 2>&1 | tee "$OUT/bench_1e7.log" | tail -4
else
    log "10^7 pool not ready in time: n = 10^7 not run"
fi
log "end"
