// Compressing and decompressing prepared images with the model
// (compress/compress.h).
#include "compress/compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/range_coder.h"
#include "train/checkpoint.h"
#include "util/util.h"

void coding_model_open(CodingModel *m, const char *checkpoint, const BackendOptions *opt) {
    memset(m, 0, sizeof *m);
    CheckpointMeta meta;
    float *params;
    checkpoint_load_params(checkpoint, &meta, &params);
    IgpzHeader *h = &m->header;
    h->model = meta.model;
    h->step = meta.step;
    h->params_crc = crc32_update(0, params, meta.num_params * sizeof(float));
    h->device = opt->device;
    h->precision = opt->device == DEVICE_CPU ? GPU_FP32 : opt->precision;
    if (opt->device == DEVICE_CUDA) snprintf(h->gpu_name, sizeof h->gpu_name, "%s", gpu_device_name());
    m->palette_crc = meta.palette_crc;
    m->checkpoint = checkpoint;
    m->threads = opt->threads > 0 ? opt->threads : 1;
    // The training buffers are for one image: only the decode cache codes.
    backend_create(&m->backend, opt, &meta.model, 1);
    backend_set_state(&m->backend, params, NULL, NULL);
    free(params);
}

// The decode cache, made when the first group is coded (after every check).
static void make_decode_cache(CodingModel *m, int group) {
    if (m->decode_group >= group) return;
    if (m->decode_group) die("internal: a decode cache for %d images, %d asked", m->decode_group, group);
    backend_decode_create(&m->backend, group);
    m->decode_group = group;
}

void coding_model_close(CodingModel *m) {
    backend_free(&m->backend);
    memset(m, 0, sizeof *m);
}

// --- The coding loop, shared by both directions ------------------------------------------

// One group of g images on its way through the model: tables of every image
// for the current position, made in parallel (they depend on the logits
// only), then coded one image after another.
typedef struct {
    int V, g;
    uint32_t *freq, *cum;  // g x V, g x (V + 1)
    double *bits;          // g: -log2 p of each image's pixel (encoding only)
} GroupTables;

static void tables_alloc(GroupTables *t, int V, int g) {
    t->V = V;
    t->g = g;
    t->freq = xmalloc((size_t)g * V * sizeof *t->freq);
    t->cum = xmalloc((size_t)g * (V + 1) * sizeof *t->cum);
    t->bits = xmalloc((size_t)g * sizeof *t->bits);
}

static void tables_free(GroupTables *t) {
    free(t->freq);
    free(t->cum);
    free(t->bits);
}

// Tables of position t for every image; symbols (NULL when decoding) also get
// their bits. Dies when the model's logits are not finite.
static void tables_make(GroupTables *t, const float *logits, const uint16_t *symbols, int pos, int64_t first,
                        int threads) {
    int bad = -1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < t->g; i++) {
        const int symbol = symbols ? symbols[i] : -1;
        if (!freq_table_with_bits(logits + (size_t)i * t->V, t->V, symbol, t->freq + (size_t)i * t->V,
                                  t->cum + (size_t)i * (t->V + 1), &t->bits[i])) {
#pragma omp critical
            bad = i;
        }
    }
    if (bad >= 0)
        die("the model's logits at pixel %d of image %lld are not finite: are its parameters finite? (./igpt info "
            "checks a checkpoint)",
            pos, (long long)(first + bad));
}

// Codes one group: its labels, then pixel t of every image for t = 0 .. T-1.
// tokens: g images of T; returns the stream; *pixel_bits += the ideal cost.
static void encode_group(CodingModel *m, const uint16_t *tokens, const uint16_t *labels, int g, int num_classes,
                         int64_t first, RangeEncoder *e, double *pixel_bits, Progress *progress) {
    const ModelConfig *cfg = &m->header.model;
    const int T = cfg->seq_len, V = cfg->vocab_size;
    rc_encoder_init(e);
    for (int i = 0; i < g; i++) rc_encode_uniform(e, labels[i], (uint32_t)num_classes);
    GroupTables tab;
    tables_alloc(&tab, V, g);
    uint16_t *prev = xcalloc((size_t)g, sizeof *prev), *now = xmalloc((size_t)g * sizeof *now);
    backend_decode_begin(&m->backend, g);
    for (int t = 0; t < T; t++) {
        const float *logits = backend_decode_step(&m->backend, prev);
        for (int i = 0; i < g; i++) now[i] = tokens[(size_t)i * T + t];
        tables_make(&tab, logits, now, t, first, m->threads);
        for (int i = 0; i < g; i++) {
            rc_encode(e, tab.cum[(size_t)i * (V + 1) + now[i]], tab.freq[(size_t)i * V + now[i]]);
            *pixel_bits += tab.bits[i];
            prev[i] = now[i];
        }
        progress_update(progress, (uint64_t)(first * T + (int64_t)(t + 1) * g), NULL);
    }
    rc_encoder_finish(e);
    free(prev);
    free(now);
    tables_free(&tab);
}

static void decode_group(CodingModel *m, const IgpzGroup *group, int num_classes, uint16_t *tokens, uint16_t *labels,
                         Progress *progress) {
    const ModelConfig *cfg = &m->header.model;
    const int T = cfg->seq_len, V = cfg->vocab_size, g = (int)group->count;
    RangeDecoder d;
    rc_decoder_init(&d, group->payload, group->payload_bytes);
    for (int i = 0; i < g; i++) labels[i] = (uint16_t)rc_decode_uniform(&d, (uint32_t)num_classes);
    GroupTables tab;
    tables_alloc(&tab, V, g);
    uint16_t *prev = xcalloc((size_t)g, sizeof *prev);
    backend_decode_begin(&m->backend, g);
    for (int t = 0; t < T; t++) {
        const float *logits = backend_decode_step(&m->backend, prev);
        tables_make(&tab, logits, NULL, t, group->first, m->threads);
        for (int i = 0; i < g; i++) {
            const int s = rc_decode(&d, tab.freq + (size_t)i * V, tab.cum + (size_t)i * (V + 1), V);
            tokens[(size_t)i * T + t] = (uint16_t)s;
            prev[i] = (uint16_t)s;
        }
        progress_update(progress, (uint64_t)(group->first * T + (int64_t)(t + 1) * g), NULL);
    }
    free(prev);
    tables_free(&tab);
}

// --- Compress ----------------------------------------------------------------------------

void compress_images(CodingModel *m, const TokenDataset *ds, const char *data_path, const int64_t *idx, int64_t n,
                     int group, const char *out_path, CompressStats *stats) {
    check_model_fits_data(m->checkpoint, &m->header.model, m->palette_crc, ds, data_path,
                          "its distributions mean nothing for these tokens; compress data prepared with its run's "
                          "palette (prepare --palette)");
    make_decode_cache(m, group);
    const double start = now_seconds();
    const int64_t T = dataset_tokens_per_image(ds);
    IgpzHeader h = m->header;
    h.count = n;
    h.group = group;
    h.num_classes = ds->num_classes;
    h.class_names = ds->class_names;
    h.palette = ds->palette;
    size_t header_size;
    uint8_t *header = igpz_header_bytes(&h, &header_size);
    AtomicFile af;
    atomic_open(&af, out_path);
    atomic_write(&af, header, header_size);
    memset(stats, 0, sizeof *stats);
    stats->header_bytes = header_size;
    uint16_t *tokens = xmalloc((size_t)(group * T) * sizeof *tokens), *labels = xmalloc((size_t)group * sizeof *labels);
    Progress progress;
    progress_start(&progress, "compress (pixels)", (uint64_t)(n * T));
    for (int64_t first = 0; first < n; first += group) {
        const int g = (int)(n - first < group ? n - first : group);
        for (int i = 0; i < g; i++) {
            memcpy(tokens + (size_t)i * T, ds->tokens + (size_t)(idx[first + i] * T), (size_t)T * sizeof *tokens);
            labels[i] = ds->labels[idx[first + i]];
        }
        RangeEncoder e;
        encode_group(m, tokens, labels, g, ds->num_classes, first, &e, &stats->pixel_bits, &progress);
        uint8_t group_header[IGPT_IGPZ_GROUP_HEADER_BYTES];
        igpz_group_header(group_header, (uint32_t)e.len, crc32_update(0, e.out, e.len),
                          igpz_tokens_crc(tokens, labels, g, T));
        atomic_write(&af, group_header, sizeof group_header);
        atomic_write(&af, e.out, e.len);
        stats->bytes += sizeof group_header + e.len;
        stats->header_bytes += sizeof group_header;
        rc_encoder_free(&e);
    }
    atomic_commit(&af);
    progress_finish(&progress, NULL);
    stats->bytes += header_size;
    stats->images = n;
    stats->pixels = n * T;
    stats->label_bits = (double)n * log2((double)ds->num_classes);
    stats->seconds = now_seconds() - start;
    free(tokens);
    free(labels);
    free(header);
}

// --- Decompress --------------------------------------------------------------------------

static const char *device_words(const IgpzHeader *h, char *buf, size_t cap) {
    igpz_describe_device(h, buf, cap);
    return buf;
}

void check_file_matches_model(const char *path, const IgpzHeader *file, const CodingModel *m) {
    const IgpzHeader *mine = &m->header;
    const ModelConfig *a = &file->model, *b = &mine->model;
    if (a->vocab_size != b->vocab_size || a->image_height != b->image_height || a->image_width != b->image_width ||
        a->d_model != b->d_model || a->n_layer != b->n_layer || a->n_head != b->n_head || a->norm != b->norm)
        die("%s was compressed by a model of %d colors at %dx%d, d_model %d, %d layers, %d heads, but %s is one of %d "
            "colors at %dx%d, d_model %d, %d layers, %d heads: decompress it with the checkpoint that compressed it",
            path, a->vocab_size, a->image_height, a->image_width, a->d_model, a->n_layer, a->n_head, m->checkpoint,
            b->vocab_size, b->image_height, b->image_width, b->d_model, b->n_layer, b->n_head);
    if (file->params_crc != mine->params_crc)
        die("%s was compressed by other parameters (CRC %08x, step %llu) than %s holds (CRC %08x, step %llu): "
            "decompress it with the checkpoint that compressed it",
            path, file->params_crc, (unsigned long long)file->step, m->checkpoint, mine->params_crc,
            (unsigned long long)mine->step);
    if (m->palette_crc != 0 && m->palette_crc != palette_crc(&file->palette))
        die("%s holds another palette (CRC %08x) than %s was trained with (CRC %08x)", path,
            palette_crc(&file->palette), m->checkpoint, m->palette_crc);
    char theirs[400], ours[400];
    if (file->device != mine->device || file->precision != mine->precision || strcmp(file->gpu_name, mine->gpu_name))
        die("%s was compressed on %s, this decompress runs on %s: the distributions must be computed the same way, "
            "bit for bit (decompress on the device it was compressed on: --device %s%s)",
            path, device_words(file, theirs, sizeof theirs), device_words(mine, ours, sizeof ours),
            device_name(file->device),
            file->device == DEVICE_CUDA && file->precision == GPU_FP32 ? " --precision fp32" : "");
}

void decompress_images(CodingModel *m, const IgpzFile *f, const char *path, TokenDataset *out) {
    const IgpzHeader *h = &f->header;
    check_file_matches_model(path, h, m);
    make_decode_cache(m, h->group);
    memset(out, 0, sizeof *out);
    const int64_t T = h->model.seq_len;
    out->count = h->count;
    out->height = h->model.image_height;
    out->width = h->model.image_width;
    out->num_classes = h->num_classes;
    out->class_names = xcalloc((size_t)h->num_classes, sizeof(ClassName));
    memcpy(out->class_names, h->class_names, (size_t)h->num_classes * sizeof(ClassName));
    palette_copy(&h->palette, &out->palette);
    out->labels = xmalloc((size_t)h->count * sizeof *out->labels);
    out->tokens = xmalloc((size_t)(h->count * T) * sizeof *out->tokens);
    Progress progress;
    progress_start(&progress, "decompress (pixels)", (uint64_t)(h->count * T));
    for (int64_t g = 0; g < f->num_groups; g++) {
        const IgpzGroup *group = &f->groups[g];
        uint16_t *tokens = out->tokens + (size_t)(group->first * T), *labels = out->labels + group->first;
        decode_group(m, group, h->num_classes, tokens, labels, &progress);
        if (igpz_tokens_crc(tokens, labels, group->count, T) != group->tokens_crc)
            die("%s: group %lld of %lld (images %lld..%lld) decoded to other pixels than were compressed (CRC "
                "mismatch), though its bytes are intact: the model's distributions here differ from the "
                "compressor's (another libm, or a device that is not bit-reproducible); nothing written",
                path, (long long)g + 1, (long long)f->num_groups, (long long)group->first,
                (long long)(group->first + group->count - 1));
    }
    progress_finish(&progress, NULL);
}
