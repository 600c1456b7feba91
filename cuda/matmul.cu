// Matrix products of the CUDA backend through cuBLASLt (fp32 accumulation,
// bf16 or fp32 storage), in the CPU reference's conventions: row-major
// matrices, weights [out, in], y = x W^T. In the interpret mode the CPU
// reference's BLAS products serve the same calls.
#include <vector>

#include "kernels.cuh"

#ifdef IGPT_INTERPRET

extern "C" {
#include "model/cpu_ops.h"
}

template <typename floatX>
static const float *as_floats(const floatX *x, size_t n, std::vector<float> &buf) {
    if constexpr (sizeof(floatX) == 4) {
        (void)n;
        (void)buf;
        return reinterpret_cast<const float *>(x);
    } else {
        buf.resize(n);
        for (size_t i = 0; i < n; i++) buf[i] = to_float(x[i]);
        return buf.data();
    }
}

template <typename floatX>
void gpu_matmul_forward(floatX *out, const floatX *inp, const floatX *W, int N, int IC, int OC, cudaStream_t) {
    std::vector<float> a, b, y((size_t)N * OC);
    matmul_forward(y.data(), as_floats(inp, (size_t)N * IC, a), as_floats(W, (size_t)OC * IC, b), N, IC, OC);
    for (size_t i = 0; i < y.size(); i++) out[i] = from_float<floatX>(y[i]);
}

template <typename floatX>
void gpu_matmul_backward(floatX *dinp, float *dW, const floatX *dout, const floatX *inp, const floatX *W, int N, int IC,
                         int OC, cudaStream_t) {
    std::vector<float> a, b, c, dx(dinp ? (size_t)N * IC : 0);
    matmul_backward(dinp ? dx.data() : nullptr, dW, as_floats(dout, (size_t)N * OC, a),
                    as_floats(inp, (size_t)N * IC, b), as_floats(W, (size_t)OC * IC, c), N, IC, OC);
    if (dinp)
        for (size_t i = 0; i < dx.size(); i++) dinp[i] = from_float<floatX>(dx[i]);
}

#else

#include <cublasLt.h>

// The process's one cuBLASLt handle and workspace, owned here: made on the
// first product and used by every model and test of the process for as long
// as it runs (the driver releases them at exit), so that no model can take
// them away from another.
static cublasLtHandle_t lt_handle = nullptr;
static void *lt_workspace = nullptr;
static const size_t lt_workspace_bytes = 32u << 20;

static void lt_check(cublasStatus_t status, const char *what, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) die("cuBLASLt error %d in %s (cuda/matmul.cu:%d)", (int)status, what, line);
}
#define LT_CHECK(call) lt_check((call), #call, __LINE__)

template <typename floatX>
static cudaDataType_t cuda_type() {
    return sizeof(floatX) == 4 ? CUDA_R_32F : CUDA_R_16BF;
}

// D (m x n, column-major, ldc = m) = alpha op(A) op(B) + beta C, with A and
// B of type AB and C/D of type CD; fp32 compute.
static void lt_matmul(bool trans_a, bool trans_b, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                      void *D, cudaDataType_t ab_type, cudaDataType_t cd_type, float beta, cudaStream_t stream) {
    if (!lt_handle) {
        LT_CHECK(cublasLtCreate(&lt_handle));
        CUDA_CHECK(cudaMalloc(&lt_workspace, lt_workspace_bytes));
    }
    cublasLtMatmulDesc_t desc;
    LT_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    cublasLtMatrixLayout_t la, lb, lc;
    LT_CHECK(cublasLtMatrixLayoutCreate(&la, ab_type, trans_a ? k : m, trans_a ? m : k, lda));
    LT_CHECK(cublasLtMatrixLayoutCreate(&lb, ab_type, trans_b ? n : k, trans_b ? k : n, ldb));
    LT_CHECK(cublasLtMatrixLayoutCreate(&lc, cd_type, m, n, m));
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt_workspace_bytes,
                                                  sizeof lt_workspace_bytes));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    LT_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_handle, desc, la, lb, lc, lc, pref, 1, &heuristic, &found));
    if (found == 0) die("cuBLASLt has no algorithm for a %d x %d x %d product", m, n, k);
    const float alpha = 1.0f;
    LT_CHECK(cublasLtMatmul(lt_handle, desc, &alpha, A, la, B, lb, &beta, D, lc, D, lc, &heuristic.algo, lt_workspace,
                            lt_workspace_bytes, stream));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
}

// Row-major X (r x c) is column-major X^T (c x r), so each product below is
// the transposed one in column-major terms.
template <typename floatX>
void gpu_matmul_forward(floatX *out, const floatX *inp, const floatX *W, int N, int IC, int OC, cudaStream_t stream) {
    // out^T (OC x N) = W (OC x IC) inp^T (IC x N)
    lt_matmul(true, false, OC, N, IC, W, IC, inp, IC, out, cuda_type<floatX>(), cuda_type<floatX>(), 0.0f, stream);
}

template <typename floatX>
void gpu_matmul_backward(floatX *dinp, float *dW, const floatX *dout, const floatX *inp, const floatX *W, int N, int IC,
                         int OC, cudaStream_t stream) {
    // dinp^T (IC x N) = W^T (IC x OC) dout^T (OC x N)
    if (dinp)
        lt_matmul(false, false, IC, N, OC, W, IC, dout, OC, dinp, cuda_type<floatX>(), cuda_type<floatX>(), 0.0f,
                  stream);
    // dW^T (IC x OC) += inp^T (IC x N) dout (N x OC)
    lt_matmul(false, true, IC, OC, N, inp, IC, dout, OC, dW, cuda_type<floatX>(), CUDA_R_32F, 1.0f, stream);
}

#endif

template void gpu_matmul_forward<float>(float *, const float *, const float *, int, int, int, cudaStream_t);
template void gpu_matmul_forward<bf16>(bf16 *, const bf16 *, const bf16 *, int, int, int, cudaStream_t);
template void gpu_matmul_backward<float>(float *, float *, const float *, const float *, const float *, int, int, int,
                                         cudaStream_t);
template void gpu_matmul_backward<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *, int, int, int,
                                        cudaStream_t);
