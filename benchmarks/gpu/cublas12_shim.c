/* libcublas.so.12 forwarding shim for machines that have only CUDA 13's cuBLAS.
 *
 * PyPI's faiss GPU wheels (faiss-gpu-cu12) link against libcublas.so.12 with versioned
 * symbols (cublasSgemmEx@libcublas.so.12, ...). On a machine whose CUDA stack is 13.x only
 * (the GPU machine this benchmark was measured on), this library provides those eight
 * symbols under the libcublas.so.12 version node and forwards each call to the same
 * function of libcublas.so.13 (loaded with dlopen on first use). The argument lists are
 * cuBLAS's documented ones; enums are passed as int (their values are the same in 12 and 13).
 *
 * Build (see run_gpu_check.sh):
 *   gcc -shared -fPIC -O2 -Wl,--version-script=cublas12.map -Wl,-soname,libcublas.so.12 \
 *       -o libcublas.so.12 cublas12_shim.c -ldl
 * It is a benchmark aid, not part of the vlal package.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef void *handle_t;
typedef void *stream_t;

static void *cublas13(const char *name) {
    static void *lib = NULL;
    if (!lib) {
        lib = dlopen("libcublas.so.13", RTLD_NOW | RTLD_GLOBAL);
        if (!lib) {
            fprintf(stderr, "cublas12 shim: cannot load libcublas.so.13: %s\n", dlerror());
            abort();
        }
    }
    void *f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "cublas12 shim: libcublas.so.13 has no %s\n", name);
        abort();
    }
    return f;
}

#define FORWARD(name, params, args)                         \
    int name params {                                       \
        static int (*real) params = NULL;                   \
        if (!real) real = (int (*) params)cublas13(#name);  \
        return real args;                                   \
    }

FORWARD(cublasCreate_v2, (handle_t *h), (h))
FORWARD(cublasDestroy_v2, (handle_t h), (h))
FORWARD(cublasSetStream_v2, (handle_t h, stream_t s), (h, s))
FORWARD(cublasSetMathMode, (handle_t h, int mode), (h, mode))
FORWARD(cublasGetMathMode, (handle_t h, int *mode), (h, mode))
FORWARD(cublasSgemmEx,
        (handle_t h, int ta, int tb, int m, int n, int k, const float *alpha, const void *A, int at,
         int lda, const void *B, int bt, int ldb, const float *beta, void *C, int ct, int ldc),
        (h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc))
FORWARD(cublasGemmEx,
        (handle_t h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at,
         int lda, const void *B, int bt, int ldb, const void *beta, void *C, int ct, int ldc,
         int compute, int algo),
        (h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo))
FORWARD(cublasGemmStridedBatchedEx,
        (handle_t h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at,
         int lda, long long sa, const void *B, int bt, int ldb, long long sb, const void *beta,
         void *C, int ct, int ldc, long long sc, int batch, int compute, int algo),
        (h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc, sc, batch,
         compute, algo))
