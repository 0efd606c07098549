#!/usr/bin/env bash
# Build a faiss GPU stack for Hopper (sm_90) that fits a 64 MiB-per-call device transfer.
#
#   bash benchmarks/gpu/make_cuvs_pack.sh OUTDIR        # ~4 min on 2 cores, needs PyPI
#
# PyPI's faiss-gpu-cu12 (vlal's [gpu] extra) has sm_70/sm_80 kernels only (cuobjdump, versions
# 1.8.0.2-1.14.1): on an H100/H200 its first kernel aborts the process ("CUDA error 209 no
# kernel image is available"). faiss-gpu-cuvs 1.15.1 (CUDA 13) carries sm_75-sm_90 kernels but
# links NVIDIA's cuVS (libcuvs.so, 267 MB). faiss only calls cuVS when an index is built with
# use_cuvs=True (off by default in GpuClonerOptions / GpuIndexFlatConfig), so this pack
# replaces libcuvs.so by a stub that defines the 117 symbols faiss imports from it: each aborts
# with a message if called, except the libstdc++ one that cuVS re-exports, which is forwarded.
# Result: OUTDIR/slimpart.00, .01, ... (xz tar of site/, ~100 MB in 50 MB parts), unpacked on
# the GPU machine with `cat slimpart.* | xz -d | tar -x` and used as SITE=.../site by
# run_gpu_check.sh. The GPU machine must have CUDA 13 libraries (cudart, cublas, cusolver,
# cusparse, curand, nvJitLink), e.g. those of a CUDA 13 PyTorch.
set -eu
OUTDIR=$(realpath "${1:?OUTDIR}")
W=$(mktemp -d)
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64"
python3 -m pip download -q --no-deps $plat -d "$W/whl" faiss-gpu-cuvs==1.15.1 libcuvs-cu13==26.6.0 \
    librmm-cu13==26.6.0 libraft-cu13==26.6.0 rapids-logger==0.3.0
mkdir -p "$W/site"
for w in "$W"/whl/*.whl; do (cd "$W/site" && python3 -m zipfile -e "$w" .); done
rm -rf "$W"/site/*.dist-info "$W"/site/lib{raft,rmm}/include
S=$W/site
# the symbols faiss takes from libcuvs.so, minus those the C/C++ runtime already has
nm -D --defined-only "$S/libcuvs/lib64/libcuvs.so" | awk '{print $3}' | sort -u >"$W/cuvs"
nm -D --undefined-only "$S/faiss/libfaiss.so" "$S/faiss/_swigfaiss.abi3.so" | awk '{print $2}' |
    sed 's/@.*//' | sort -u >"$W/faiss"
for l in libstdc++.so.6 libgcc_s.so.1 libc.so.6 libm.so.6; do
    nm -D --defined-only "$(gcc -print-file-name=$l)" 2>/dev/null | awk '{print $3}' | sed 's/@.*//'
done | sort -u >"$W/sys"
comm -12 "$W/faiss" "$W/cuvs" | comm -23 - "$W/sys" >"$W/need"
python3 - "$W/need" "$W/stub.c" <<'PY'
import sys
need = [l.strip() for l in open(sys.argv[1]) if l.strip()]
fwd = [n for n in need if n.startswith("_ZNSt")]  # libstdc++ code cuVS re-exports: forward it
with open(sys.argv[2], "w") as f:
    f.write('#define _GNU_SOURCE\n#include <dlfcn.h>\n#include <stdio.h>\n#include <stdlib.h>\n'
            'static void die(const char *s) { fprintf(stderr, "cuVS stub called: %s\\n", s); abort(); }\n')
    for i, n in enumerate(x for x in need if x not in fwd):
        f.write(f'void s{i}(void) __asm__("{n}");\nvoid s{i}(void) {{ die("{n[:60]}"); }}\n')
    for i, n in enumerate(fwd):
        f.write(f'__attribute__((visibility("hidden"))) void *fwd{i};\n'
                f'__attribute__((constructor)) static void init{i}(void) {{ fwd{i} = dlsym(RTLD_NEXT, "{n}"); }}\n'
                f'__asm__(".text\\n.globl {n}\\n.type {n}, @function\\n{n}:\\n jmp *fwd{i}(%rip)\\n");\n')
print(f"libcuvs stub: {len(need)} symbols ({len(fwd)} forwarded)")
PY
gcc -shared -fPIC -O1 -Wl,-soname,libcuvs.so -o "$S/libcuvs/lib64/libcuvs.so" "$W/stub.c" -ldl
echo 'void vlal_empty_stub(void) {}' >"$W/empty.c"
gcc -shared -fPIC -Wl,-soname,libcuvs_c.so -o "$S/libcuvs/lib64/libcuvs_c.so" "$W/empty.c"
gcc -shared -fPIC -Wl,-soname,libraft.so -o "$S/libraft/lib64/libraft.so" "$W/empty.c"
mkdir -p "$OUTDIR"
tar -cf - -C "$W" site | xz -T0 -9 | split -b 50000000 -d - "$OUTDIR/slimpart."
ls -la "$OUTDIR"
rm -rf "$W"
