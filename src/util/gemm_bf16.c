// bf16 matrix products (gemm_bf16.h) by oneDNN's matmul primitive.
#include "util/gemm_bf16.h"

#include <omp.h>
#include <string.h>

#include "util/bf16_simd.h"
#include "util/util.h"

float bf16_to_float(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

bool cpu_has_avx512_bf16(void) {
    // Asked by every block of the bf16 model's rounding: the answer is kept (relaxed atomics: every thread finds
    // the same).
    static int known = -1;
    int has = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
        __atomic_store_n(&known, has, __ATOMIC_RELAXED);
    }
    return has;
}

BF16_TARGET static void round_rows_fast(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        uint16_t *row_out = out + r * ld;
        const size_t whole = cols / 16 * 16;
        for (size_t i = 0; i < whole; i += 16) {
            const __m512 v = _mm512_loadu_ps(row + i);
            store16_bf16(row_out + i, &v, true);
        }
        for (size_t i = whole; i < cols; i++) row_out[i] = bf16_from_float(row[i]);
    }
}

// rows x cols values, rows ld apart in x and in out, on the calling thread.
static void round_rows(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols) {
    if (cpu_has_avx512_bf16()) {
        round_rows_fast(out, x, ld, rows, cols);
        return;
    }
    for (size_t r = 0; r < rows; r++)
#pragma omp simd
        for (size_t i = 0; i < cols; i++) out[r * ld + i] = bf16_from_float(x[r * ld + i]);
}

void round_span_to_bf16(uint16_t *out, const float *x, size_t n) { round_rows(out, x, n, 1, n); }

// A part of the rows per thread.
void round_rows_to_bf16(uint16_t *out, const float *x, size_t ld, size_t rows, size_t cols, int threads) {
    if (rows * cols < 65536 || threads < 2) {
        round_rows(out, x, ld, rows, cols);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const size_t parts = (size_t)omp_get_num_threads(), p = (size_t)omp_get_thread_num();
        const size_t from = rows * p / parts, to = rows * (p + 1) / parts;
        round_rows(out + from * ld, x + from * ld, ld, to - from, cols);
    }
}

// As rows of 1,024 (the threads share the rows), the last n mod 1,024 after.
void round_to_bf16(uint16_t *out, const float *x, size_t n, int threads) {
    enum { ROW = 1024 };
    const size_t rows = n / ROW;
    round_rows_to_bf16(out, x, ROW, rows, ROW, threads);
    round_span_to_bf16(out + rows * ROW, x + rows * ROW, n - rows * ROW);
}

#ifndef IGPT_DNNL
const char *gemm_bf16_unavailable(void) {
    return "this igpt was built without oneDNN, which runs the CPU's bf16 products (scripts/setup.sh installs "
           "libdnnl-dev; then make again)";
}
bool gemm_bf16_built(void) { return false; }
void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B, int ldb,
               float beta, float *C, int ldc) {
    die("internal: bf16 products (%s%s %dx%dx%d, %p %d %p %d %g %p %d) in a build without oneDNN", trans_a ? "T" : "N",
        trans_b ? "T" : "N", m, n, k, (const void *)A, lda, (const void *)B, ldb, beta, (void *)C, ldc);
}
#else
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

const char *gemm_bf16_unavailable(void) {
    if (!cpu_has_avx512_bf16())
        return "this CPU has no AVX512-BF16, so bf16 products would be emulated, slower than fp32 (use --precision "
               "fp32)";
    return NULL;
}
bool gemm_bf16_built(void) { return true; }

#define DNNL_CHECK(call)                                                            \
    do {                                                                            \
        const dnnl_status_t status_ = (call);                                       \
        if (status_ != dnnl_success) die("oneDNN: %s failed (%d)", #call, status_); \
    } while (0)

// A matmul primitive is built for one shape and layout (oneDNN picks and
// compiles its kernel then: tens of microseconds), so each is kept and reused.
// A model has a handful of shapes per batch size; past the table's size the
// oldest entry gives way.
typedef struct {
    int trans_a, trans_b, accumulate;  // ints, not bools: no padding, so that shapes compare with memcmp
    int m, n, k, lda, ldb, ldc;
} ProductShape;

typedef struct {
    ProductShape shape;
    dnnl_memory_desc_t a, b, c;
    dnnl_primitive_t primitive;
} Product;

enum { MAX_PRODUCTS = 64 };
static Product products[MAX_PRODUCTS];
static int num_products, next_evicted;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_mutex_t products_lock = PTHREAD_MUTEX_INITIALIZER;

// A row-major rows x cols matrix with leading dimension ld, read transposed
// when asked: oneDNN takes the transposition as strides.
static void describe(dnnl_memory_desc_t *desc, int rows, int cols, int ld, bool transposed, dnnl_data_type_t type) {
    const dnnl_dims_t dims = {rows, cols};
    const dnnl_dims_t strides = {transposed ? 1 : ld, transposed ? ld : 1};
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(desc, 2, dims, type, strides));
}

static void build_product(Product *p, const ProductShape *s) {
    p->shape = *s;
    describe(&p->a, s->m, s->k, s->lda, s->trans_a, dnnl_bf16);
    describe(&p->b, s->k, s->n, s->ldb, s->trans_b, dnnl_bf16);
    describe(&p->c, s->m, s->n, s->ldc, false, dnnl_f32);
    dnnl_matmul_desc_t matmul;
    DNNL_CHECK(dnnl_matmul_desc_init(&matmul, &p->a, &p->b, NULL, &p->c));
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    dnnl_post_ops_t post_ops = NULL;
    if (s->accumulate) {  // C += product: the sum post-op adds what C held
        DNNL_CHECK(dnnl_post_ops_create(&post_ops));
        DNNL_CHECK(dnnl_post_ops_append_sum(post_ops, 1.0f));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, post_ops));
    }
    dnnl_primitive_desc_t desc;
    DNNL_CHECK(dnnl_primitive_desc_create(&desc, &matmul, attr, engine, NULL));
    DNNL_CHECK(dnnl_primitive_create(&p->primitive, desc));
    DNNL_CHECK(dnnl_primitive_desc_destroy(desc));
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    if (post_ops) DNNL_CHECK(dnnl_post_ops_destroy(post_ops));
}

// The kept product of that shape, built on first use. Called under the lock.
static Product *product_for(const ProductShape *s) {
    if (!engine) {
        DNNL_CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
        DNNL_CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    }
    for (int i = 0; i < num_products; i++)
        if (!memcmp(&products[i].shape, s, sizeof *s)) return &products[i];
    Product *p;
    if (num_products < MAX_PRODUCTS) p = &products[num_products++];
    else {
        p = &products[next_evicted];
        next_evicted = (next_evicted + 1) % MAX_PRODUCTS;
        DNNL_CHECK(dnnl_primitive_destroy(p->primitive));
    }
    build_product(p, s);
    return p;
}

void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B, int ldb,
               float beta, float *C, int ldc) {
    if (beta != 0.0f && beta != 1.0f) die("internal: gemm_bf16 takes beta 0 or 1, got %g", beta);
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  // an empty sum: C = beta C
        if (beta == 0.0f)
            for (int i = 0; i < m; i++) memset(C + (size_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    const ProductShape shape = {trans_a, trans_b, beta != 0.0f, m, n, k, lda, ldb, ldc};
    pthread_mutex_lock(&products_lock);
    Product *p = product_for(&shape);
    dnnl_memory_t a, b, c;
    DNNL_CHECK(dnnl_memory_create(&a, &p->a, engine, (void *)A));
    DNNL_CHECK(dnnl_memory_create(&b, &p->b, engine, (void *)B));
    DNNL_CHECK(dnnl_memory_create(&c, &p->c, engine, C));
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    DNNL_CHECK(dnnl_primitive_execute(p->primitive, stream, 3, args));
    DNNL_CHECK(dnnl_stream_wait(stream));
    DNNL_CHECK(dnnl_memory_destroy(a));
    DNNL_CHECK(dnnl_memory_destroy(b));
    DNNL_CHECK(dnnl_memory_destroy(c));
    pthread_mutex_unlock(&products_lock);
}
#endif
