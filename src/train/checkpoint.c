// Checkpoints (checkpoint.h). A checkpoint holds everything a run needs to go
// on bit for bit: parameters, both Adam moments, the step, the data position
// and the settings. It is written to a temporary file and renamed into place,
// so a kill at any instant leaves the previous checkpoint intact; the header
// and the payload each carry a CRC, and the reader checks both.
#include "train/checkpoint.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/palette.h"
#include "model/params.h"
#include "util/util.h"

// Header fields (byte offsets), little-endian.
enum {
    H_MAGIC = 0,          // 8 bytes
    H_VERSION = 8,        // u32
    H_HEADER_BYTES = 12,  // u32 = 256
    H_MODEL = 16,         // 8 x u32: vocab, seq_len, image h, image w, d_model, n_layer, n_head, norm
    H_NUM_PARAMS = 48,    // u64
    H_STEP = 56,          // u64
    H_EPOCH = 64,         // u64
    H_EPOCH_POS = 72,     // u64
    H_SEED = 80,          // u64
    H_OPTIM = 88,   // 9 x 8 bytes: lr, min_lr_frac (f64), warmup, total_steps (i64), beta1, beta2, eps, wd, clip (f64)
    H_BATCH = 160,  // u32
    H_MICRO_BATCH = 164,  // u32
    H_DATA_COUNT = 168,   // u64
    H_DATA_CRC = 176,     // u32
    H_PAYLOAD_CRC = 180,  // u32: params, m, v
    H_TRAIN_LOSS = 184,   // f64
    H_VAL_LOSS = 192,     // f64
    H_HEADER_CRC = 200,   // u32 of the 256 header bytes with this field zero
    H_EVAL_EVERY = 208,   // u64
    H_EVAL_IMAGES = 216,  // u64
    H_CKPT_EVERY = 224,   // u64
    H_PALETTE_CRC = 232,  // u32, 0 = not recorded (older checkpoints); 236..255 reserved, zero
};

static void put_f64(uint8_t *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_u64(p, bits);
}

static double get_f64(const uint8_t *p) {
    uint64_t bits = get_u64(p);
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

static void encode_header(uint8_t *h, const CheckpointMeta *m, uint32_t payload_crc) {
    memset(h, 0, IGPT_CHECKPOINT_HEADER_BYTES);
    memcpy(h + H_MAGIC, IGPT_CHECKPOINT_MAGIC, 8);
    put_u32(h + H_VERSION, IGPT_CHECKPOINT_VERSION);
    put_u32(h + H_HEADER_BYTES, IGPT_CHECKPOINT_HEADER_BYTES);
    const int model_fields[8] = {m->model.vocab_size, m->model.seq_len, m->model.image_height, m->model.image_width,
                                 m->model.d_model,    m->model.n_layer, m->model.n_head,       (int)m->model.norm};
    for (int i = 0; i < 8; i++) put_u32(h + H_MODEL + 4 * i, (uint32_t)model_fields[i]);
    put_u64(h + H_NUM_PARAMS, m->num_params);
    put_u64(h + H_STEP, m->step);
    put_u64(h + H_EPOCH, m->epoch);
    put_u64(h + H_EPOCH_POS, m->epoch_pos);
    put_u64(h + H_SEED, m->seed);
    put_f64(h + H_OPTIM + 0, m->optim.lr);
    put_f64(h + H_OPTIM + 8, m->optim.min_lr_frac);
    put_u64(h + H_OPTIM + 16, (uint64_t)m->optim.warmup_steps);
    put_u64(h + H_OPTIM + 24, (uint64_t)m->optim.total_steps);
    put_f64(h + H_OPTIM + 32, m->optim.beta1);
    put_f64(h + H_OPTIM + 40, m->optim.beta2);
    put_f64(h + H_OPTIM + 48, m->optim.eps);
    put_f64(h + H_OPTIM + 56, m->optim.weight_decay);
    put_f64(h + H_OPTIM + 64, m->optim.grad_clip);
    put_u32(h + H_BATCH, m->batch);
    put_u32(h + H_MICRO_BATCH, m->micro_batch);
    put_u64(h + H_DATA_COUNT, m->data_count);
    put_u32(h + H_DATA_CRC, m->data_crc);
    put_u32(h + H_PAYLOAD_CRC, payload_crc);
    put_f64(h + H_TRAIN_LOSS, m->train_loss);
    put_f64(h + H_VAL_LOSS, m->val_loss);
    put_u64(h + H_EVAL_EVERY, m->eval_every);
    put_u64(h + H_EVAL_IMAGES, m->eval_images);
    put_u64(h + H_CKPT_EVERY, m->checkpoint_every);
    put_u32(h + H_PALETTE_CRC, m->palette_crc);
    put_u32(h + H_HEADER_CRC, crc32_update(0, h, IGPT_CHECKPOINT_HEADER_BYTES));
}

bool checkpoint_find_non_finite(const CheckpointMeta *meta, const float *params, const float *adam_m,
                                const float *adam_v, char *where, size_t cap) {
    const struct {
        const char *what;
        const float *values;
    } arrays[] = {{"parameter", params}, {"Adam first moment of", adam_m}, {"Adam second moment of", adam_v}};
    for (int a = 0; a < 3; a++) {
        size_t bad = 0;
        while (bad < meta->num_params && isfinite(arrays[a].values[bad])) bad++;
        if (bad == meta->num_params) continue;
        const int n = param_tensors(&meta->model, NULL);
        TensorInfo *tensors = xcalloc((size_t)n, sizeof *tensors);
        param_tensors(&meta->model, tensors);
        int t = 0;
        while (t + 1 < n && tensors[t + 1].offset <= bad) t++;
        snprintf(where, cap, "%s %s[%zu] is %g (value %zu of %llu)", arrays[a].what, tensors[t].name,
                 bad - tensors[t].offset, (double)arrays[a].values[bad], bad, (unsigned long long)meta->num_params);
        free(tensors);
        return true;
    }
    return false;
}

// A state that is not finite is never written: every checkpoint on disk is one a run can go on from, and
// the one before stays the newest (it is what --resume takes).
static void refuse_non_finite(const char *path, const CheckpointMeta *meta, const float *params, const float *adam_m,
                              const float *adam_v) {
    char where[256];
    if (!checkpoint_find_non_finite(meta, params, adam_m, adam_v, where, sizeof where)) return;
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    char *last_good = checkpoint_latest(slash ? dir : ".");
    die("training diverged at step %llu (%s after the update), so %s was not written; the last good checkpoint "
        "is %s. Try a lower --lr or a longer --warmup.",
        (unsigned long long)meta->step, where, path, last_good ? last_good : "none");
}

void checkpoint_save(const char *path, const CheckpointMeta *meta, const float *params, const float *adam_m,
                     const float *adam_v) {
    refuse_non_finite(path, meta, params, adam_m, adam_v);
    const size_t bytes = meta->num_params * sizeof(float);
    uint32_t crc = crc32_update(0, params, bytes);
    crc = crc32_update(crc, adam_m, bytes);
    crc = crc32_update(crc, adam_v, bytes);
    uint8_t header[IGPT_CHECKPOINT_HEADER_BYTES];
    encode_header(header, meta, crc);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, header, sizeof header);
    atomic_write(&af, params, bytes);
    atomic_write(&af, adam_m, bytes);
    atomic_write(&af, adam_v, bytes);
    atomic_commit(&af);
}

static uint32_t read_header(const char *path, CheckpointMeta *m) {
    const int64_t size = regular_file_size(path);
    if (size < 0) die("%s: no such checkpoint", path);
    uint8_t h[IGPT_CHECKPOINT_HEADER_BYTES];
    FILE *f = xfopen(path, "rb");
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    if (got < 8 || memcmp(h + H_MAGIC, IGPT_CHECKPOINT_MAGIC, 8) != 0)
        die("%s is not an igpt checkpoint (bad magic)", path);
    if (got < sizeof h) die("%s: checkpoint is truncated inside its header (%lld bytes)", path, (long long)size);
    uint32_t version = get_u32(h + H_VERSION);
    if (version != IGPT_CHECKPOINT_VERSION)
        die("%s: checkpoint format version %u, this igpt reads version %u", path, version, IGPT_CHECKPOINT_VERSION);
    uint32_t stored = get_u32(h + H_HEADER_CRC);
    put_u32(h + H_HEADER_CRC, 0);
    if (crc32_update(0, h, sizeof h) != stored) die("%s: checkpoint header is corrupt (CRC mismatch)", path);
    memset(m, 0, sizeof *m);
    int fields[8];
    for (int i = 0; i < 8; i++) fields[i] = (int)get_u32(h + H_MODEL + 4 * i);
    m->model = (ModelConfig){.vocab_size = fields[0],
                             .seq_len = fields[1],
                             .image_height = fields[2],
                             .image_width = fields[3],
                             .d_model = fields[4],
                             .n_layer = fields[5],
                             .n_head = fields[6],
                             .norm = (NormKind)fields[7]};
    m->num_params = get_u64(h + H_NUM_PARAMS);
    m->step = get_u64(h + H_STEP);
    m->epoch = get_u64(h + H_EPOCH);
    m->epoch_pos = get_u64(h + H_EPOCH_POS);
    m->seed = get_u64(h + H_SEED);
    m->optim.lr = get_f64(h + H_OPTIM + 0);
    m->optim.min_lr_frac = get_f64(h + H_OPTIM + 8);
    m->optim.warmup_steps = (int64_t)get_u64(h + H_OPTIM + 16);
    m->optim.total_steps = (int64_t)get_u64(h + H_OPTIM + 24);
    m->optim.beta1 = get_f64(h + H_OPTIM + 32);
    m->optim.beta2 = get_f64(h + H_OPTIM + 40);
    m->optim.eps = get_f64(h + H_OPTIM + 48);
    m->optim.weight_decay = get_f64(h + H_OPTIM + 56);
    m->optim.grad_clip = get_f64(h + H_OPTIM + 64);
    m->batch = get_u32(h + H_BATCH);
    m->micro_batch = get_u32(h + H_MICRO_BATCH);
    m->data_count = get_u64(h + H_DATA_COUNT);
    m->data_crc = get_u32(h + H_DATA_CRC);
    m->train_loss = get_f64(h + H_TRAIN_LOSS);
    m->val_loss = get_f64(h + H_VAL_LOSS);
    m->eval_every = get_u64(h + H_EVAL_EVERY);
    m->eval_images = get_u64(h + H_EVAL_IMAGES);
    m->checkpoint_every = get_u64(h + H_CKPT_EVERY);
    m->palette_crc = get_u32(h + H_PALETTE_CRC);
    char problem[160];
    if (model_config_problem(&m->model, problem, sizeof problem))
        die("%s: the model its header describes is out of bounds (%s): corrupt checkpoint", path, problem);
    if (m->num_params != param_count(&m->model))
        die("%s: %llu parameters recorded, but its config has %zu (corrupt checkpoint)", path,
            (unsigned long long)m->num_params, param_count(&m->model));
    const uint64_t expected = saturating_add(IGPT_CHECKPOINT_HEADER_BYTES, saturating_mul(m->num_params, 12));
    if ((uint64_t)size != expected)
        die("%s: %lld bytes, expected %llu (truncated checkpoint)", path, (long long)size,
            (unsigned long long)expected);
    return get_u32(h + H_PAYLOAD_CRC);
}

void checkpoint_read_meta(const char *path, CheckpointMeta *meta) { read_header(path, meta); }

void checkpoint_load(const char *path, CheckpointMeta *meta, float **params, float **adam_m, float **adam_v) {
    uint32_t expected_crc = read_header(path, meta);
    const size_t bytes = meta->num_params * sizeof(float);
    *params = xmalloc(bytes);
    *adam_m = xmalloc(bytes);
    *adam_v = xmalloc(bytes);
    FILE *f = xfopen(path, "rb");
    fseek(f, IGPT_CHECKPOINT_HEADER_BYTES, SEEK_SET);
    xfread(*params, bytes, f, path);
    xfread(*adam_m, bytes, f, path);
    xfread(*adam_v, bytes, f, path);
    fclose(f);
    uint32_t crc = crc32_update(0, *params, bytes);
    crc = crc32_update(crc, *adam_m, bytes);
    crc = crc32_update(crc, *adam_v, bytes);
    if (crc != expected_crc) die("%s: checkpoint data is corrupt (CRC mismatch)", path);
}

void checkpoint_load_params(const char *path, CheckpointMeta *meta, float **params) {
    const uint32_t expected_crc = read_header(path, meta);
    const size_t bytes = meta->num_params * sizeof(float);
    *params = xmalloc(bytes);
    FILE *f = xfopen(path, "rb");
    fseek(f, IGPT_CHECKPOINT_HEADER_BYTES, SEEK_SET);
    xfread(*params, bytes, f, path);
    uint32_t crc = crc32_update(0, *params, bytes);
    enum { PIECE = 1 << 22 };
    uint8_t *piece = xmalloc(PIECE);
    for (size_t left = 2 * bytes; left > 0;) {  // the moments m and v
        const size_t n = left < PIECE ? left : PIECE;
        xfread(piece, n, f, path);
        crc = crc32_update(crc, piece, n);
        left -= n;
    }
    free(piece);
    fclose(f);
    if (crc != expected_crc) die("%s: checkpoint data is corrupt (CRC mismatch)", path);
}

char *checkpoint_path(const char *run_dir, uint64_t step) {
    return xasprintf("%s/checkpoint-%08llu.bin", run_dir, (unsigned long long)step);
}

bool checkpoint_name_step(const char *name, size_t n, long long *step) {
    const char *prefix = "checkpoint-", *suffix = ".bin";
    const size_t np = strlen(prefix), ns = strlen(suffix);
    if (n < np + 8 + ns || strncmp(name, prefix, np) != 0 || strncmp(name + n - ns, suffix, ns) != 0) return false;
    long long v = 0;
    for (size_t i = np; i < n - ns; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (LLONG_MAX - 9) / 10) return false;  // not a step igpt wrote
        v = v * 10 + (name[i] - '0');
    }
    *step = v;
    return true;
}

static int compare_steps(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

int64_t checkpoint_steps(const char *run_dir, uint64_t **steps) {
    *steps = NULL;
    DIR *d = opendir(run_dir);
    if (!d) return -1;
    int64_t n = 0, cap = 0;
    long long step;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!checkpoint_name_step(e->d_name, strlen(e->d_name), &step)) continue;
        if (n == cap) *steps = xrealloc(*steps, (size_t)(cap = cap ? 2 * cap : 16) * sizeof(uint64_t));
        (*steps)[n++] = (uint64_t)step;
    }
    closedir(d);
    if (n) qsort(*steps, (size_t)n, sizeof(uint64_t), compare_steps);
    return n;
}

char *checkpoint_latest(const char *run_dir) {
    uint64_t *steps;
    int64_t n = checkpoint_steps(run_dir, &steps);
    char *path = n > 0 ? checkpoint_path(run_dir, steps[n - 1]) : NULL;
    free(steps);
    return path;
}

void check_model_fits_data(const char *model_path, const ModelConfig *model, uint32_t palette_crc_of_model,
                           const TokenDataset *data, const char *data_path, const char *remedy) {
    if (model->vocab_size != data->palette.colors || model->image_height != data->height ||
        model->image_width != data->width)
        die("%s is a model of %d colors at %dx%d, but %s holds %d colors at %dx%d", model_path, model->vocab_size,
            model->image_height, model->image_width, data_path, data->palette.colors, data->height, data->width);
    if (palette_crc_of_model != 0 && palette_crc_of_model != palette_crc(&data->palette))
        die("%s was trained with another palette than %s's (same number of colors, other colors): %s", model_path,
            data_path, remedy);
}
