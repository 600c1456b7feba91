// Matrix products of the CUDA backend through cuBLASLt (fp32 accumulation,
// bf16 or fp32 storage), in the CPU reference's conventions: row-major
// matrices, weights [out, in], y = x W^T. In the interpret mode the CPU
// reference's BLAS products serve the same calls.
#include <cstdint>
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
    matmul_forward(y.data(), as_floats(inp, (size_t)N * IC, a), as_floats(W, (size_t)OC * IC, b), N, IC, OC, false);
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
// them away from another. The plans below live as long.
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

// The largest power of two (up to 256) that divides a pointer: cuBLASLt
// picks only algorithms that need no more alignment than the pointers have.
static uint32_t alignment_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a != 0) a /= 2;
    return a;
}

// One product shape, with its descriptors and the algorithm the heuristic
// chose for it, made on first use and kept for the process (a training step
// repeats the same few shapes: no per-call descriptor setup or heuristic query).
struct LtPlan {
    bool trans_a, trans_b;
    int m, n, k, lda, ldb;
    cudaDataType_t ab_type, cd_type;
    bool accumulate;
    uint32_t align_a, align_b, align_d;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    bool same_shape(const LtPlan &o) const {
        return trans_a == o.trans_a && trans_b == o.trans_b && m == o.m && n == o.n && k == o.k && lda == o.lda &&
               ldb == o.ldb && ab_type == o.ab_type && cd_type == o.cd_type && accumulate == o.accumulate &&
               align_a == o.align_a && align_b == o.align_b && align_d == o.align_d;
    }
};
static std::vector<LtPlan> lt_plans;

static void make_plan(LtPlan *p) {
    LT_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_a = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                            op_b = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    LT_CHECK(
        cublasLtMatrixLayoutCreate(&p->la, p->ab_type, p->trans_a ? p->k : p->m, p->trans_a ? p->m : p->k, p->lda));
    LT_CHECK(
        cublasLtMatrixLayoutCreate(&p->lb, p->ab_type, p->trans_b ? p->n : p->k, p->trans_b ? p->k : p->n, p->ldb));
    LT_CHECK(cublasLtMatrixLayoutCreate(&p->lc, p->cd_type, p->m, p->n, p->m));
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt_workspace_bytes,
                                                  sizeof lt_workspace_bytes));
    // C and D are the same buffer here.
    const uint32_t aligns[] = {p->align_a, p->align_b, p->align_d, p->align_d};
    const cublasLtMatmulPreferenceAttributes_t align_attrs[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, align_attrs[i], &aligns[i], sizeof aligns[i]));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    LT_CHECK(
        cublasLtMatmulAlgoGetHeuristic(lt_handle, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &heuristic, &found));
    if (found == 0) die("cuBLASLt has no algorithm for a %d x %d x %d product", p->m, p->n, p->k);
    p->algo = heuristic.algo;
    cublasLtMatmulPreferenceDestroy(pref);
}

// D (m x n, column-major, ldc = m) = alpha op(A) op(B) + beta C, with A and
// B of type AB and C/D of type CD; fp32 compute.
static void lt_matmul(bool trans_a, bool trans_b, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                      void *D, cudaDataType_t ab_type, cudaDataType_t cd_type, float beta, cudaStream_t stream) {
    if (!lt_handle) {
        LT_CHECK(cublasLtCreate(&lt_handle));
        CUDA_CHECK(cudaMalloc(&lt_workspace, lt_workspace_bytes));
    }
    LtPlan want = {
        trans_a,         trans_b,         m,  n,  k,  lda, ldb, ab_type, cd_type, beta != 0.0f, alignment_of(A),
        alignment_of(B), alignment_of(D), {}, {}, {}, {},  {}};
    const LtPlan *plan = nullptr;
    for (const LtPlan &p : lt_plans)
        if (p.same_shape(want)) plan = &p;
    if (!plan) {
        make_plan(&want);
        lt_plans.push_back(want);
        plan = &lt_plans.back();
    }
    const float alpha = 1.0f;
    LT_CHECK(cublasLtMatmul(lt_handle, plan->desc, &alpha, A, plan->la, B, plan->lb, &beta, D, plan->lc, D, plan->lc,
                            &plan->algo, lt_workspace, lt_workspace_bytes, stream));
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
