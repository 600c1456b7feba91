// The Backend's dispatch (backend.h): one `if` per function, CPU or GPU.
#include "model/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/params.h"
#include "parallel/dist.h"
#include "train/optim.h"
#include "util/util.h"

DeviceKind backend_choose_device(const char *name) {
    const char *why = NULL;
    if (!strcmp(name, "cpu")) return DEVICE_CPU;
    if (!strcmp(name, "auto")) return gpu_device_count(NULL) > 0 ? backend_choose_device("cuda") : DEVICE_CPU;
    if (!strcmp(name, "cuda")) {
        if (gpu_device_count(&why) > 0) {
            gpu_use_device(dist_get()->local_rank);  // rank i of a machine drives its GPU i
            return DEVICE_CUDA;
        }
        die("--device cuda: no usable GPU (%s); use --device cpu", why ? why : "none found");
    }
    die("--device must be auto, cpu or cuda, got '%s'", name);
}

const char *device_name(DeviceKind device) { return device == DEVICE_CUDA ? "cuda" : "cpu"; }

bool parse_precision(const char *name, DeviceKind device, GpuPrecision *out) {
    if (!strcmp(name, "auto")) *out = device == DEVICE_CUDA ? GPU_BF16 : GPU_FP32;
    else if (!strcmp(name, "bf16")) *out = GPU_BF16;
    else if (!strcmp(name, "fp32")) *out = GPU_FP32;
    else return false;
    return true;
}

const char *precision_name(GpuPrecision precision) { return precision == GPU_BF16 ? "bf16" : "fp32"; }

bool parse_attention(const char *name, GpuAttention *out) {
    if (!strcmp(name, "auto")) *out = GPU_ATTENTION_AUTO;
    else if (!strcmp(name, "flash")) *out = GPU_ATTENTION_FLASH;
    else if (!strcmp(name, "portable")) *out = GPU_ATTENTION_PORTABLE;
    else return false;
    return true;
}

const char *attention_name(GpuAttention attention) {
    return attention == GPU_ATTENTION_FLASH ? "flash" : attention == GPU_ATTENTION_PORTABLE ? "portable" : "auto";
}

void backend_create(Backend *b, const BackendOptions *opt, const ModelConfig *cfg, int max_batch) {
    memset(b, 0, sizeof *b);
    b->device = opt->device;
    b->cfg = *cfg;
    b->num_params = param_count(cfg);
    b->zero = opt->zero;
    const char *host_clip = getenv("IGPT_CLIP_ON_HOST");
    b->clip_on_device = b->device == DEVICE_CUDA && !b->zero && !(host_clip && !strcmp(host_clip, "1"));
    if (b->device == DEVICE_CPU) {
        cpu_backend_create(&b->cpu, cfg, max_batch, opt->threads, opt->zero);
        if (opt->precision == GPU_BF16) model_use_bf16_products(&b->cpu.model);
    } else {
        b->gpu = gpu_model_create(cfg, max_batch, opt->precision, opt->recompute, opt->zero);
        gpu_model_set_attention(b->gpu, opt->attention);
    }
}

void backend_free(Backend *b) {
    if (b->decode) {
        decode_free(b->decode);
        free(b->decode);
    }
    if (b->device == DEVICE_CPU) cpu_backend_free(&b->cpu);
    else gpu_model_free(b->gpu);
    memset(b, 0, sizeof *b);
}

void backend_plan(const BackendOptions *opt, const ModelConfig *cfg, int max_batch, char *out, size_t cap) {
    const int threads = opt->threads;
    char state_text[32], act_text[32], free_text[32];
    size_t state = 0, act = 0;
    if (opt->device == DEVICE_CPU) {
        const bool bf16 = opt->precision == GPU_BF16;
        cpu_backend_memory(cfg, max_batch, threads, opt->zero, bf16, &state, &act);
        snprintf(out, cap, "CPU %s, %d thread%s; memory %s parameters + gradients + Adam state, %s activations",
                 bf16 ? "fp32 with bf16 matrix products" : "fp32", threads, threads == 1 ? "" : "s",
                 format_bytes((double)state, state_text, sizeof state_text),
                 format_bytes((double)act, act_text, sizeof act_text));
        return;
    }
    size_t free_bytes = 0, total = 0;
    gpu_model_memory(cfg, max_batch, opt->precision, opt->recompute, opt->zero, &state, &act);
    gpu_memory_info(&free_bytes, &total);
    const GpuAttention attention = gpu_attention_kernels(cfg, opt->precision, opt->attention);
    snprintf(out, cap,
             "GPU %s, %s, %s attention; memory %s parameters + gradients + Adam state, %s activations (%d images%s), "
             "of %s free",
             gpu_device_name(), opt->precision == GPU_BF16 ? "bf16 with fp32 master weights" : "fp32",
             attention == GPU_ATTENTION_FLASH ? "tensor-core" : "portable",
             format_bytes((double)state, state_text, sizeof state_text),
             format_bytes((double)act, act_text, sizeof act_text), max_batch, opt->recompute ? ", recomputed" : "",
             format_bytes((double)free_bytes, free_text, sizeof free_text));
}

void backend_set_state(Backend *b, const float *params, const float *adam_m, const float *adam_v) {
    if (b->device == DEVICE_CPU) cpu_backend_set_state(&b->cpu, params, adam_m, adam_v);
    else gpu_model_set_state(b->gpu, params, adam_m, adam_v);
}

void backend_get_state(Backend *b, const float **params, const float **adam_m, const float **adam_v) {
    if (b->device == DEVICE_CPU) cpu_backend_get_state(&b->cpu, params, adam_m, adam_v);
    else gpu_model_get_state(b->gpu, params, adam_m, adam_v);
}

void backend_zero_grads(Backend *b) {
    if (b->device == DEVICE_CPU) model_zero_grads(&b->cpu.model);
    else gpu_model_zero_grads(b->gpu);
}

double backend_forward(Backend *b, const uint16_t *tokens, int batch) {
    if (b->device == DEVICE_CPU) return model_forward(&b->cpu.model, tokens, batch);
    return gpu_model_forward(b->gpu, tokens, batch);
}

void backend_backward(Backend *b, const uint16_t *tokens, int batch, float loss_scale) {
    if (b->device == DEVICE_CPU) model_backward(&b->cpu.model, tokens, batch, loss_scale);
    else gpu_model_backward(b->gpu, tokens, batch, loss_scale);
}

double backend_grad_norm(Backend *b) {
    if (b->device == DEVICE_CPU) return cpu_backend_grad_norm(&b->cpu);
    return gpu_model_grad_norm(b->gpu);
}

void backend_adamw(Backend *b, const OptimConfig *oc, int64_t step, float grad_scale) {
    if (b->device == DEVICE_CPU) cpu_backend_adamw(&b->cpu, oc, step, grad_scale);
    else gpu_model_adamw(b->gpu, oc, step, grad_scale);
}

double backend_clip_and_adamw(Backend *b, const OptimConfig *oc, int64_t step) {
    if (b->zero) die("internal: backend_clip_and_adamw without ZeRO only");
    if (b->clip_on_device) return gpu_model_clip_and_adamw(b->gpu, oc, step);
    const double norm = backend_grad_norm(b);
    backend_adamw(b, oc, step, clip_factor(oc, norm));
    return norm;
}

void backend_features(Backend *b, int batch, float *features) {
    if (b->device == DEVICE_CPU) model_features(&b->cpu.model, batch, features);
    else gpu_model_features(b->gpu, batch, features);
}

void backend_decode_create(Backend *b, int max_batch) {
    if (b->device == DEVICE_CUDA) {
        gpu_model_decode_create(b->gpu, max_batch);
        return;
    }
    if (b->decode) die("internal: backend_decode_create called twice");
    b->decode = xmalloc(sizeof *b->decode);
    const Model *m = &b->cpu.model;
    decode_create(b->decode, &b->cfg, &m->p, max_batch, m->threads);
}

void backend_decode_begin(Backend *b, int batch) {
    if (b->device == DEVICE_CUDA) gpu_model_decode_begin(b->gpu, batch);
    else decode_begin(b->decode, batch);
}

const float *backend_decode_step(Backend *b, const uint16_t *prev) {
    if (b->device == DEVICE_CUDA) return gpu_model_decode_step(b->gpu, prev);
    return decode_step(b->decode, prev);
}

void backend_collectives_init(Backend *b) {
    if (b->device == DEVICE_CUDA) gpu_collectives_init(dist_get()->rank, dist_get()->world);
}

void backend_collectives_finalize(Backend *b) {
    if (b->device == DEVICE_CUDA) gpu_collectives_finalize();
}

void backend_set_layer_hook(Backend *b, void (*hook)(void *ctx, int layer), void *ctx) {
    if (b->device == DEVICE_CPU) {
        b->cpu.model.on_layer_grads = hook;
        b->cpu.model.on_layer_grads_ctx = ctx;
    } else {
        gpu_model_set_layer_hook(b->gpu, hook, ctx);
    }
}

void backend_sum_start(Backend *b, int layer) {
    if (b->device == DEVICE_CPU) cpu_backend_sum_start(&b->cpu, layer);
    else gpu_model_sum_start(b->gpu, layer);
}

void backend_sum_wait(Backend *b) {
    if (b->device == DEVICE_CPU) cpu_backend_sum_wait(&b->cpu);
    else gpu_model_sum_wait(b->gpu);
}

double backend_reduce_scatter_grads(Backend *b) {
    if (b->device == DEVICE_CPU) return cpu_backend_reduce_scatter_grads(&b->cpu);
    return gpu_model_reduce_scatter_grads(b->gpu);
}
