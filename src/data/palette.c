// The color palette (palette.h). iGPT does not model 8-bit RGB: it clusters
// the colors of the training pixels with k-means into 512 centres (9 bits)
// and turns each pixel into the id of its nearest centre, so an image is a
// sequence of H x W tokens from a 512-word vocabulary instead of 3 x H x W
// bytes. The centres are rounded to 8 bits before anyone uses them, so a
// saved palette reproduces the tokens exactly. A palette imported with a
// released model keeps its float centres instead (palette_set_centers): the
// model was trained on the tokens of those, and they are saved bit for bit.
#include "data/palette.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

// Exact centres are compared in double, (p - c)^2 summed R, G, B: clang would
// otherwise fuse the multiply-adds (GCC in ISO C mode does not), and the
// tokens would depend on the compiler.
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

// Work is cut into chunks of this many points; each chunk's partial result is
// computed by one thread and the chunks are combined in order, which keeps the
// result independent of the number of threads.
#define CHUNK_POINTS 16384
// Points handled together in the nearest-center search: centers in the outer
// loop, points in the inner loop, so the compiler vectorises over points.
#define BLOCK_POINTS 64

static int64_t num_chunks(int64_t n) { return (n + CHUNK_POINTS - 1) / CHUNK_POINTS; }

// For points [begin, end): nearest center index and squared distance.
static void nearest_centers_f32(const float *points, int64_t begin, int64_t end, const float *centers, int k,
                                int32_t *label, float *dist) {
    float px[BLOCK_POINTS], py[BLOCK_POINTS], pz[BLOCK_POINTS], best[BLOCK_POINTS];
    int32_t best_k[BLOCK_POINTS];
    for (int64_t b = begin; b < end; b += BLOCK_POINTS) {
        int m = (int)(end - b < BLOCK_POINTS ? end - b : BLOCK_POINTS);
        for (int p = 0; p < BLOCK_POINTS; p++) {
            int q = p < m ? p : 0;  // pad the last block with a copy of its first point
            px[p] = points[(b + q) * 3 + 0];
            py[p] = points[(b + q) * 3 + 1];
            pz[p] = points[(b + q) * 3 + 2];
            best[p] = FLT_MAX;
            best_k[p] = 0;
        }
        for (int c = 0; c < k; c++) {
            const float cx = centers[c * 3 + 0], cy = centers[c * 3 + 1], cz = centers[c * 3 + 2];
            for (int p = 0; p < BLOCK_POINTS; p++) {
                float dx = px[p] - cx, dy = py[p] - cy, dz = pz[p] - cz;
                float d = dx * dx + dy * dy + dz * dz;
                bool closer = d < best[p];
                best[p] = closer ? d : best[p];
                best_k[p] = closer ? c : best_k[p];
            }
        }
        for (int p = 0; p < m; p++) {
            label[b + p] = best_k[p];
            dist[b + p] = best[p];
        }
    }
}

static float sq_dist3(const float *a, const float *b) {
    float dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return dx * dx + dy * dy + dz * dz;
}

// k-means++ (Arthur & Vassilvitskii 2007): each next center is a point drawn
// with probability proportional to its squared distance to the nearest
// center chosen so far.
static void kmeanspp_init(const float *points, int64_t n, const KmeansOptions *opt, float *centers, Rng *rng) {
    const int64_t chunks = num_chunks(n);
    float *dist = xmalloc((size_t)n * sizeof(float));
    double *chunk_sum = xmalloc((size_t)chunks * sizeof(double));
    int64_t first = (int64_t)rng_below(rng, (uint64_t)n);
    memcpy(centers, points + first * 3, 3 * sizeof(float));
    for (int c = 1; c <= opt->k; c++) {
        const float *newest = centers + (c - 1) * 3;
#pragma omp parallel for schedule(static) num_threads(opt->threads)
        for (int64_t ch = 0; ch < chunks; ch++) {
            int64_t begin = ch * CHUNK_POINTS, end = begin + CHUNK_POINTS < n ? begin + CHUNK_POINTS : n;
            double s = 0.0;
            for (int64_t i = begin; i < end; i++) {
                float d = sq_dist3(points + i * 3, newest);
                if (c == 1 || d < dist[i]) dist[i] = d;
                s += dist[i];
            }
            chunk_sum[ch] = s;
        }
        if (c == opt->k) break;
        double total = 0.0;
        for (int64_t ch = 0; ch < chunks; ch++) total += chunk_sum[ch];
        int64_t pick;
        if (total <= 0.0) {  // every point coincides with a center: any point will do
            pick = (int64_t)rng_below(rng, (uint64_t)n);
        } else {
            double target = rng_uniform(rng) * total, acc = 0.0;
            int64_t ch = 0;
            while (ch < chunks - 1 && acc + chunk_sum[ch] <= target) acc += chunk_sum[ch++];
            int64_t i = ch * CHUNK_POINTS, end = i + CHUNK_POINTS < n ? i + CHUNK_POINTS : n;
            pick = end - 1;
            for (; i < end; i++) {
                acc += dist[i];
                if (acc > target && dist[i] > 0.0f) {
                    pick = i;
                    break;
                }
            }
        }
        memcpy(centers + c * 3, points + pick * 3, 3 * sizeof(float));
    }
    free(dist);
    free(chunk_sum);
}

// Scratch of Lloyd's iterations: per point its center and distance, and the
// per-chunk partial sums that are added in chunk order.
typedef struct {
    int64_t n, chunks;
    int k;
    int32_t *label, *prev_label;  // n
    float *dist;                  // n: squared distance to the assigned center
    double *partial;              // per chunk: k x (sum x, sum y, sum z, count)
    double *chunk_sse;            // per chunk: summed squared distance
    int64_t *chunk_changed;       // per chunk: points whose center changed
    double *total;                // k x (sum x, sum y, sum z, count) over all chunks
} Lloyd;

static void lloyd_alloc(Lloyd *w, int64_t n, int k) {
    w->n = n;
    w->k = k;
    w->chunks = num_chunks(n);
    w->label = xmalloc((size_t)n * sizeof(int32_t));
    w->prev_label = xmalloc((size_t)n * sizeof(int32_t));
    w->dist = xmalloc((size_t)n * sizeof(float));
    w->partial = xmalloc((size_t)w->chunks * (size_t)k * 4 * sizeof(double));
    w->chunk_sse = xmalloc((size_t)w->chunks * sizeof(double));
    w->chunk_changed = xmalloc((size_t)w->chunks * sizeof(int64_t));
    w->total = xmalloc((size_t)k * 4 * sizeof(double));
}

static void lloyd_free(Lloyd *w) {
    free(w->label);
    free(w->prev_label);
    free(w->dist);
    free(w->partial);
    free(w->chunk_sse);
    free(w->chunk_changed);
    free(w->total);
}

// Assigns every point to its nearest center and sums, per center, the points
// assigned to it (w->total); returns the summed squared distance and, in
// *changed, how many points changed center (all of them on the first pass).
static double lloyd_assign(Lloyd *w, const float *points, const float *centers, bool first, int threads,
                           int64_t *changed) {
    const int k = w->k;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t ch = 0; ch < w->chunks; ch++) {
        int64_t begin = ch * CHUNK_POINTS, end = begin + CHUNK_POINTS < w->n ? begin + CHUNK_POINTS : w->n;
        nearest_centers_f32(points, begin, end, centers, k, w->label, w->dist);
        double *acc = w->partial + (size_t)ch * k * 4;
        memset(acc, 0, (size_t)k * 4 * sizeof(double));
        double sse = 0.0;
        int64_t moved = 0;
        for (int64_t i = begin; i < end; i++) {
            double *a = acc + w->label[i] * 4;
            a[0] += points[i * 3 + 0];
            a[1] += points[i * 3 + 1];
            a[2] += points[i * 3 + 2];
            a[3] += 1.0;
            sse += w->dist[i];
            moved += first || w->label[i] != w->prev_label[i];
            w->prev_label[i] = w->label[i];
        }
        w->chunk_sse[ch] = sse;
        w->chunk_changed[ch] = moved;
    }
    memset(w->total, 0, (size_t)k * 4 * sizeof(double));
    double sse = 0.0;
    *changed = 0;
    for (int64_t ch = 0; ch < w->chunks; ch++) {
        const double *acc = w->partial + (size_t)ch * k * 4;
        for (int j = 0; j < k * 4; j++) w->total[j] += acc[j];
        sse += w->chunk_sse[ch];
        *changed += w->chunk_changed[ch];
    }
    return sse;
}

// Moves every center to the mean of its points. An empty cluster moves onto
// the point worst served by its center (the first such point), which then no
// longer counts as far. Returns the number of clusters reseeded so.
static int lloyd_update(Lloyd *w, const float *points, float *centers) {
    int reseeded = 0;
    for (int c = 0; c < w->k; c++) {
        const double count = w->total[c * 4 + 3];
        if (count > 0) {
            for (int d = 0; d < 3; d++) centers[c * 3 + d] = (float)(w->total[c * 4 + d] / count);
            continue;
        }
        int64_t far = 0;
        for (int64_t i = 1; i < w->n; i++)
            if (w->dist[i] > w->dist[far]) far = i;
        memcpy(centers + c * 3, points + far * 3, 3 * sizeof(float));
        w->dist[far] = 0.0f;
        reseeded++;
    }
    return reseeded;
}

void kmeans_fit(const float *points, int64_t n, const KmeansOptions *opt, float *centers, KmeansResult *result) {
    if (n < 1) die("k-means needs at least one point");
    Rng rng;
    rng_init(&rng, opt->seed, 0x6b6d65616e73ull /* "kmeans" */);
    kmeanspp_init(points, n, opt, centers, &rng);
    Lloyd w;
    lloyd_alloc(&w, n, opt->k);
    memset(result, 0, sizeof *result);
    double prev_mse = DBL_MAX;
    Progress progress;
    progress_start(&progress, "k-means", (uint64_t)opt->max_iters);
    if (!opt->show_progress) progress.quiet = true;
    for (int iter = 0; iter < opt->max_iters; iter++) {
        int64_t changed;
        const double mse = lloyd_assign(&w, points, centers, iter == 0, opt->threads, &changed) / (double)n;
        result->iters = iter + 1;
        result->mse = mse;  // the error of this assignment, before the update
        if (changed == 0 || (prev_mse < DBL_MAX && prev_mse - mse <= opt->tol * prev_mse)) {
            result->converged = true;
            break;
        }
        prev_mse = mse;
        result->reseeded_empty += lloyd_update(&w, points, centers);
        char extra[64];
        snprintf(extra, sizeof extra, "mse=%.2f changed=%lld", mse, (long long)changed);
        progress_update(&progress, (uint64_t)iter + 1, extra);
    }
    char extra[96];
    snprintf(extra, sizeof extra, "mse=%.2f iters=%d%s", result->mse, result->iters,
             result->converged ? " converged" : "");
    progress_finish(&progress, extra);
    lloyd_free(&w);
}

static int compare_by_luma(const void *a, const void *b) {
    const uint8_t *x = a, *y = b;
    int lx = 299 * x[0] + 587 * x[1] + 114 * x[2], ly = 299 * y[0] + 587 * y[1] + 114 * y[2];
    if (lx != ly) return lx < ly ? -1 : 1;
    return memcmp(x, y, 3);
}

void palette_fit(const uint8_t *rgb_pixels, int64_t num_pixels, int64_t sample, const KmeansOptions *opt, Palette *out,
                 KmeansResult *result) {
    if (num_pixels < 1) die("cannot fit a palette on zero pixels");
    int64_t n = sample > 0 && sample < num_pixels ? sample : num_pixels;
    float *points = xmalloc((size_t)n * 3 * sizeof(float));
    Rng rng;
    rng_init(&rng, opt->seed, 0x73616d706c65ull /* "sample" */);
    for (int64_t i = 0; i < n; i++) {
        int64_t src = n == num_pixels ? i : (int64_t)rng_below(&rng, (uint64_t)num_pixels);
        for (int d = 0; d < 3; d++) points[i * 3 + d] = rgb_pixels[src * 3 + d];
    }
    float *centers = xmalloc((size_t)opt->k * 3 * sizeof(float));
    kmeans_fit(points, n, opt, centers, result);
    palette_alloc(out, opt->k);
    for (int i = 0; i < opt->k * 3; i++) {
        float v = roundf(centers[i]);
        out->rgb[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
    }
    qsort(out->rgb, (size_t)opt->k, 3, compare_by_luma);
    free(points);
    free(centers);
}

// The 8-bit path: exact integer distances to the rgb colors.
static uint64_t quantize_rgb(const Palette *pal, const uint8_t *rgb_pixels, int64_t num_pixels, uint16_t *tokens,
                             int threads) {
    const int k = pal->colors;
    int32_t *cr = xmalloc((size_t)k * sizeof(int32_t)), *cg = xmalloc((size_t)k * sizeof(int32_t)),
            *cb = xmalloc((size_t)k * sizeof(int32_t));
    for (int c = 0; c < k; c++) {
        cr[c] = pal->rgb[c * 3 + 0];
        cg[c] = pal->rgb[c * 3 + 1];
        cb[c] = pal->rgb[c * 3 + 2];
    }
    const int64_t blocks = (num_pixels + BLOCK_POINTS - 1) / BLOCK_POINTS;
    uint64_t sq_error = 0;
#pragma omp parallel for schedule(static) reduction(+ : sq_error) num_threads(threads)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int32_t r[BLOCK_POINTS], g[BLOCK_POINTS], b[BLOCK_POINTS], best[BLOCK_POINTS], best_k[BLOCK_POINTS];
        int64_t base = blk * BLOCK_POINTS;
        int m = (int)(num_pixels - base < BLOCK_POINTS ? num_pixels - base : BLOCK_POINTS);
        for (int p = 0; p < BLOCK_POINTS; p++) {
            const uint8_t *px = rgb_pixels + (base + (p < m ? p : 0)) * 3;
            r[p] = px[0];
            g[p] = px[1];
            b[p] = px[2];
            best[p] = INT32_MAX;
            best_k[p] = 0;
        }
        for (int c = 0; c < k; c++) {
            const int32_t rc = cr[c], gc = cg[c], bc = cb[c];
            for (int p = 0; p < BLOCK_POINTS; p++) {
                int32_t dr = r[p] - rc, dg = g[p] - gc, db = b[p] - bc;
                int32_t d = dr * dr + dg * dg + db * db;
                bool closer = d < best[p];
                best[p] = closer ? d : best[p];
                best_k[p] = closer ? c : best_k[p];
            }
        }
        for (int p = 0; p < m; p++) {
            tokens[base + p] = (uint16_t)best_k[p];
            sq_error += (uint64_t)best[p];
        }
    }
    free(cr);
    free(cg);
    free(cb);
    return sq_error;
}

// The exact path: distances in double to the float centers, summed R, G, B
// in that order (the same sum whatever the thread count or block), ties to
// the lower index. The error is counted to the rgb color of the chosen center.
static uint64_t quantize_centers(const Palette *pal, const uint8_t *rgb_pixels, int64_t num_pixels, uint16_t *tokens,
                                 int threads) {
    const int k = pal->colors;
    double *cr = xmalloc((size_t)k * sizeof(double)), *cg = xmalloc((size_t)k * sizeof(double)),
           *cb = xmalloc((size_t)k * sizeof(double));
    for (int c = 0; c < k; c++) {
        cr[c] = pal->centers[c * 3 + 0];
        cg[c] = pal->centers[c * 3 + 1];
        cb[c] = pal->centers[c * 3 + 2];
    }
    const int64_t blocks = (num_pixels + BLOCK_POINTS - 1) / BLOCK_POINTS;
    uint64_t sq_error = 0;
#pragma omp parallel for schedule(static) reduction(+ : sq_error) num_threads(threads)
    for (int64_t blk = 0; blk < blocks; blk++) {
        double r[BLOCK_POINTS], g[BLOCK_POINTS], b[BLOCK_POINTS], best[BLOCK_POINTS];
        int32_t best_k[BLOCK_POINTS];
        int64_t base = blk * BLOCK_POINTS;
        int m = (int)(num_pixels - base < BLOCK_POINTS ? num_pixels - base : BLOCK_POINTS);
        for (int p = 0; p < BLOCK_POINTS; p++) {
            const uint8_t *px = rgb_pixels + (base + (p < m ? p : 0)) * 3;
            r[p] = px[0];
            g[p] = px[1];
            b[p] = px[2];
            best[p] = DBL_MAX;
            best_k[p] = 0;
        }
        for (int c = 0; c < k; c++) {
            const double rc = cr[c], gc = cg[c], bc = cb[c];
            for (int p = 0; p < BLOCK_POINTS; p++) {
                double dr = r[p] - rc, dg = g[p] - gc, db = b[p] - bc;
                double d = dr * dr + dg * dg + db * db;
                bool closer = d < best[p];
                best[p] = closer ? d : best[p];
                best_k[p] = closer ? c : best_k[p];
            }
        }
        for (int p = 0; p < m; p++) {
            tokens[base + p] = (uint16_t)best_k[p];
            const uint8_t *px = rgb_pixels + (base + p) * 3, *color = pal->rgb + best_k[p] * 3;
            for (int j = 0; j < 3; j++) sq_error += (uint64_t)((px[j] - color[j]) * (px[j] - color[j]));
        }
    }
    free(cr);
    free(cg);
    free(cb);
    return sq_error;
}

uint64_t palette_quantize(const Palette *pal, const uint8_t *rgb_pixels, int64_t num_pixels, uint16_t *tokens,
                          int threads) {
    if (pal->centers) return quantize_centers(pal, rgb_pixels, num_pixels, tokens, threads);
    if (pal->exact_crc)
        die("the palette (identity %08x) holds only the 8-bit rounding of exact cluster centers: quantizing with it "
            "would give other tokens than its model was trained on (use the palette.bin that holds the centers)",
            pal->exact_crc);
    return quantize_rgb(pal, rgb_pixels, num_pixels, tokens, threads);
}

double psnr_db(uint64_t sq_error, int64_t values) {
    if (sq_error == 0) return INFINITY;
    double mse = (double)sq_error / (double)values;
    return 10.0 * log10(255.0 * 255.0 / mse);
}

void palette_alloc(Palette *pal, int colors) {
    pal->colors = colors;
    pal->rgb = xcalloc((size_t)colors, 3);
    pal->centers = NULL;
    pal->exact_crc = 0;
}

void palette_free(Palette *pal) {
    free(pal->rgb);
    free(pal->centers);
    pal->rgb = NULL;
    pal->centers = NULL;
    pal->colors = 0;
    pal->exact_crc = 0;
}

// The centers as they lie in a file: little-endian float32 (allocated).
static uint8_t *centers_bytes(const Palette *pal) {
    const size_t n = (size_t)pal->colors * 3;
    uint8_t *bytes = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &pal->centers[i], 4);
        put_u32(bytes + i * 4, bits);
    }
    return bytes;
}

// CRC-32 of the colors, then of the centers' bytes when there are centers:
// what palette.bin records and, for a palette without centers, the CRC every
// file of igpt has always recorded of it.
static uint32_t colors_and_centers_crc(const Palette *pal) {
    uint32_t crc = crc32_update(0, pal->rgb, (size_t)pal->colors * 3);
    if (!pal->centers) return crc;
    uint8_t *bytes = centers_bytes(pal);
    crc = crc32_update(crc, bytes, (size_t)pal->colors * 3 * 4);
    free(bytes);
    return crc;
}

uint32_t palette_crc(const Palette *pal) { return pal->exact_crc ? pal->exact_crc : colors_and_centers_crc(pal); }

void palette_copy(const Palette *src, Palette *dst) {
    palette_alloc(dst, src->colors);
    memcpy(dst->rgb, src->rgb, (size_t)src->colors * 3);
    if (src->centers) {
        dst->centers = xmalloc((size_t)src->colors * 3 * sizeof(float));
        memcpy(dst->centers, src->centers, (size_t)src->colors * 3 * sizeof(float));
    }
    dst->exact_crc = src->exact_crc;
}

// A center value must be 0 or a normal float in (0, 255]: told by its bits,
// since ./igpt flushes subnormal floats to zero (flush_denormals_to_zero) and
// a test binary does not, so a subnormal would compare differently in each.
static bool center_is_valid(float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    const uint32_t exponent = bits >> 23 & 0xff;
    if ((bits & 0x7fffffffu) == 0) return true;  // 0 or -0
    return !(bits >> 31) && exponent != 0 && exponent != 0xff && v <= 255.0f;
}

// The value of v for a message: a subnormal from its bits, which the
// conversion to double would flush to 0 in ./igpt.
static double center_value(float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if ((bits >> 23 & 0xff) != 0) return (double)v;
    const double magnitude = ldexp((double)(bits & 0x7fffffu), -149);
    return bits >> 31 ? -magnitude : magnitude;
}

// Index of the first center value that is not valid, or -1.
static int64_t first_bad_center(const float *centers, int colors) {
    for (int64_t i = 0; i < (int64_t)colors * 3; i++)
        if (!center_is_valid(centers[i])) return i;
    return -1;
}

static uint8_t round_center(float v) { return (uint8_t)roundf(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v); }

void palette_set_centers(Palette *pal, const float *centers) {
    const int64_t bad = first_bad_center(centers, pal->colors);
    if (bad >= 0)
        die("cluster center %lld (channel %lld) is %g, expected a pixel value in 0..255 (0 or a normal float)",
            (long long)(bad / 3), (long long)(bad % 3), center_value(centers[bad]));
    const size_t n = (size_t)pal->colors * 3;
    if (!pal->centers) pal->centers = xmalloc(n * sizeof(float));
    memcpy(pal->centers, centers, n * sizeof(float));
    for (size_t i = 0; i < n; i++) pal->rgb[i] = round_center(centers[i]);
    pal->exact_crc = 0;
}

// ---------------------------------------------------------------------------
// Palette file (docs/formats.md): 32-byte header, then colors x 3 bytes;
// version 2 (flags 1) then the exact centers, colors x 3 little-endian float32.
// A palette without centers is written as version 1, as it always was.

#define PALETTE_MAGIC "IGPTPAL\0"
#define PALETTE_VERSION 1u
#define PALETTE_VERSION_CENTERS 2u
#define PALETTE_HEADER_BYTES 32
#define PALETTE_FLAG_CENTERS 1u
enum { OFF_VERSION = 8, OFF_COLORS = 12, OFF_BODY_CRC = 16, OFF_HEADER_CRC = 20, OFF_FLAGS = 24 };

void palette_save(const Palette *pal, const char *path) {
    if (!pal->centers && pal->exact_crc)
        die("internal: %s: a palette that holds only the rounding of exact centers cannot be saved", path);
    uint8_t header[PALETTE_HEADER_BYTES] = {0};
    memcpy(header, PALETTE_MAGIC, 8);
    put_u32(header + OFF_VERSION, pal->centers ? PALETTE_VERSION_CENTERS : PALETTE_VERSION);
    put_u32(header + OFF_COLORS, (uint32_t)pal->colors);
    put_u32(header + OFF_BODY_CRC, colors_and_centers_crc(pal));
    put_u32(header + OFF_HEADER_CRC, crc32_update(0, header, OFF_HEADER_CRC));
    if (pal->centers) put_u32(header + OFF_FLAGS, PALETTE_FLAG_CENTERS);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, header, sizeof header);
    atomic_write(&af, pal->rgb, (size_t)pal->colors * 3);
    if (pal->centers) {
        uint8_t *bytes = centers_bytes(pal);
        atomic_write(&af, bytes, (size_t)pal->colors * 3 * 4);
        free(bytes);
    }
    atomic_commit(&af);
}

// The header's checks; returns whether centers follow the colors.
static bool check_palette_header(const char *path, const uint8_t *header, int64_t size, uint32_t *colors) {
    uint32_t version = get_u32(header + OFF_VERSION);
    if (version != PALETTE_VERSION && version != PALETTE_VERSION_CENTERS)
        die("%s: palette format version %u, this igpt reads versions %u and %u", path, version, PALETTE_VERSION,
            PALETTE_VERSION_CENTERS);
    if (get_u32(header + OFF_HEADER_CRC) != crc32_update(0, header, OFF_HEADER_CRC))
        die("%s: palette header is corrupt (CRC mismatch)", path);
    // Version 1 never read its reserved bytes; version 2 says in them whether centers follow.
    const uint32_t flags = version == PALETTE_VERSION ? 0 : get_u32(header + OFF_FLAGS);
    if (flags > PALETTE_FLAG_CENTERS)
        die("%s: palette flags are %u, this igpt knows 0 and 1 (exact centers follow; corrupt header?)", path, flags);
    const bool has_centers = flags == PALETTE_FLAG_CENTERS;
    *colors = get_u32(header + OFF_COLORS);
    if (*colors < IGPT_MIN_COLORS || *colors > IGPT_MAX_COLORS)
        die("%s: palette has %u colors, expected %d..%d", path, *colors, IGPT_MIN_COLORS, IGPT_MAX_COLORS);
    const int64_t expected = PALETTE_HEADER_BYTES + (int64_t)*colors * (has_centers ? 15 : 3);
    if (size != expected)
        die("%s: %lld bytes, but a palette of %u colors%s takes %lld (truncated or padded file)", path, (long long)size,
            *colors, has_centers ? " with exact centers" : "", (long long)expected);
    return has_centers;
}

// The centers after the colors (checked by check_centers once the CRC has passed).
static void read_centers(const char *path, FILE *f, Palette *pal) {
    const size_t n = (size_t)pal->colors * 3;
    uint8_t *bytes = xmalloc(n * 4);
    xfread(bytes, n * 4, f, path);
    pal->centers = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        const uint32_t bits = get_u32(bytes + i * 4);
        memcpy(&pal->centers[i], &bits, 4);
    }
    free(bytes);
}

static void check_centers(const char *path, const Palette *pal) {
    const int64_t bad = first_bad_center(pal->centers, pal->colors);
    if (bad >= 0)
        die("%s: exact center %lld (channel %lld) is %g, expected a pixel value in 0..255, 0 or a normal float "
            "(corrupt file)",
            path, (long long)(bad / 3), (long long)(bad % 3), center_value(pal->centers[bad]));
    for (int64_t i = 0; i < (int64_t)pal->colors * 3; i++)
        if (pal->rgb[i] != round_center(pal->centers[i]))
            die("%s: color %lld is not the rounding of its exact center (corrupt file)", path, (long long)(i / 3));
}

void palette_load(const char *path, Palette *pal) {
    const int64_t size = regular_file_size(path);
    if (size < 0) die("%s: no such palette file", path);
    FILE *f = xfopen(path, "rb");
    uint8_t header[PALETTE_HEADER_BYTES];
    size_t got = fread(header, 1, sizeof header, f);
    fclose(f);
    if (got < sizeof header || memcmp(header, PALETTE_MAGIC, 8) != 0)
        die("%s is not an igpt palette or prepared data file (bad magic)", path);
    uint32_t colors;
    const bool has_centers = check_palette_header(path, header, size, &colors);
    palette_alloc(pal, (int)colors);
    f = xfopen(path, "rb");
    fseek(f, PALETTE_HEADER_BYTES, SEEK_SET);
    xfread(pal->rgb, (size_t)colors * 3, f, path);
    if (has_centers) read_centers(path, f, pal);
    fclose(f);
    if (colors_and_centers_crc(pal) != get_u32(header + OFF_BODY_CRC))
        die("%s: palette %s corrupt (CRC mismatch)", path, has_centers ? "colors or centers are" : "colors are");
    if (has_centers) check_centers(path, pal);
}
