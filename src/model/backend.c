#include "model/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/dist.h"
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

bool parse_precision(const char *name, GpuPrecision *out) {
    if (!strcmp(name, "bf16")) *out = GPU_BF16;
    else if (!strcmp(name, "fp32")) *out = GPU_FP32;
    else return false;
    return true;
}

void backend_create(Backend *b, const BackendOptions *opt, const ModelConfig *cfg, int max_batch) {
    const DeviceKind device = opt->device;
    const GpuPrecision precision = opt->precision;
    const int threads = opt->threads;
    memset(b, 0, sizeof *b);
    b->device = device;
    b->cfg = *cfg;
    b->num_params = param_count(cfg);
    b->threads = threads;
    if (device == DEVICE_CPU) {
        model_create(&b->cpu, cfg, max_batch, threads);
        if (!opt->zero) b->adam = xcalloc(2 * b->num_params, sizeof(float));
    } else {
        b->gpu = gpu_model_create(cfg, max_batch, precision, opt->recompute, opt->zero);
    }
}

void backend_free(Backend *b) {
    if (b->device == DEVICE_CPU) model_free(&b->cpu);
    else gpu_model_free(b->gpu);
    free(b->adam);
    free(b->host_state);
    memset(b, 0, sizeof *b);
}

void backend_plan(const BackendOptions *opt, const ModelConfig *cfg, int max_batch, char *out, size_t cap) {
    const DeviceKind device = opt->device;
    const GpuPrecision precision = opt->precision;
    const int threads = opt->threads;
    char state_text[32], act_text[32], free_text[32];
    if (device == DEVICE_CPU) {
        // Parameters and gradients, and the Adam moments (only this rank's pieces with ZeRO).
        const size_t moments = opt->zero ? dist_zero_layout(cfg, NULL, NULL, NULL, NULL, NULL) : param_count(cfg);
        const double cpu_state_bytes = (double)(param_count(cfg) * 2 + moments * 2) * sizeof(float);
        snprintf(out, cap, "CPU fp32, %d thread%s; memory %s parameters + gradients + Adam state, %s activations",
                 threads, threads == 1 ? "" : "s", format_bytes(cpu_state_bytes, state_text, sizeof state_text),
                 format_bytes((double)model_activation_bytes(cfg, max_batch, threads), act_text, sizeof act_text));
        return;
    }
    size_t state = 0, act = 0, free_bytes = 0, total = 0;
    gpu_model_memory(cfg, max_batch, precision, opt->recompute, opt->zero, &state, &act);
    gpu_memory_info(&free_bytes, &total);
    snprintf(out, cap, "GPU %s, %s; memory %s parameters + gradients + Adam state, %s activations (%d images%s), of %s free",
             gpu_device_name(), precision == GPU_BF16 ? "bf16 with fp32 master weights" : "fp32",
             format_bytes((double)state, state_text, sizeof state_text),
             format_bytes((double)act, act_text, sizeof act_text), max_batch, opt->recompute ? ", recomputed" : "",
             format_bytes((double)free_bytes, free_text, sizeof free_text));
}

void backend_set_state(Backend *b, const float *params, const float *adam_m, const float *adam_v) {
    const size_t n = b->num_params;
    if (b->device == DEVICE_CPU) {
        memcpy(b->cpu.params, params, n * sizeof(float));
        if (!b->adam) return;  // ZeRO: data_parallel.c keeps the moments
        if (adam_m) memcpy(b->adam, adam_m, n * sizeof(float));
        else memset(b->adam, 0, n * sizeof(float));
        if (adam_v) memcpy(b->adam + n, adam_v, n * sizeof(float));
        else memset(b->adam + n, 0, n * sizeof(float));
        return;
    }
    gpu_model_set_params(b->gpu, params);
    float *zeros = NULL;
    if (!adam_m || !adam_v) zeros = xcalloc(n, sizeof(float));
    gpu_model_set_adam(b->gpu, adam_m ? adam_m : zeros, adam_v ? adam_v : zeros);
    free(zeros);
}

void backend_get_state(Backend *b, const float **params, const float **adam_m, const float **adam_v) {
    const size_t n = b->num_params;
    if (b->device == DEVICE_CPU) {
        *params = b->cpu.params, *adam_m = b->adam, *adam_v = b->adam ? b->adam + n : NULL;
        return;
    }
    if (!b->host_state) b->host_state = xmalloc(3 * n * sizeof(float));  // on the first checkpoint
    gpu_model_get_params(b->gpu, b->host_state);
    gpu_model_get_adam(b->gpu, b->host_state + n, b->host_state + 2 * n);
    *params = b->host_state, *adam_m = b->host_state + n, *adam_v = b->host_state + 2 * n;
}

void backend_sum_start(Backend *b, size_t offset, size_t n) {
    if (b->device == DEVICE_CPU) dist_sum_floats_start(b->cpu.grads + offset, n);
    else gpu_model_sum_start(b->gpu, offset, n);
}

void backend_sum_wait(Backend *b) {
    if (b->device == DEVICE_CPU) dist_wait_all();
    else gpu_model_sum_wait(b->gpu);
}

void backend_set_layer_hook(Backend *b, void (*hook)(void *ctx, int layer), void *ctx) {
    if (b->device == DEVICE_CPU) {
        b->cpu.on_layer_grads = hook;
        b->cpu.on_layer_grads_ctx = ctx;
    } else {
        gpu_model_set_layer_hook(b->gpu, hook, ctx);
    }
}

void backend_zero_grads(Backend *b) {
    if (b->device == DEVICE_CPU) model_zero_grads(&b->cpu);
    else gpu_model_zero_grads(b->gpu);
}

double backend_forward(Backend *b, const uint16_t *tokens, int batch) {
    return b->device == DEVICE_CPU ? model_forward(&b->cpu, tokens, batch) : gpu_model_forward(b->gpu, tokens, batch);
}

void backend_backward(Backend *b, const uint16_t *tokens, int batch, float loss_scale) {
    if (b->device == DEVICE_CPU) model_backward(&b->cpu, tokens, batch, loss_scale);
    else gpu_model_backward(b->gpu, tokens, batch, loss_scale);
}

double backend_grad_norm(Backend *b) {
    return b->device == DEVICE_CPU ? global_norm(b->cpu.grads, b->num_params, b->threads) : gpu_model_grad_norm(b->gpu);
}

void backend_adamw(Backend *b, const OptimConfig *oc, int64_t step, float grad_scale) {
    if (b->device == DEVICE_CPU)
        adamw_update(oc, &b->cfg, step, b->cpu.params, b->cpu.grads, b->adam, b->adam + b->num_params, grad_scale,
                     b->threads);
    else gpu_model_adamw(b->gpu, oc, step, grad_scale);
}

void backend_features(Backend *b, int batch, float *features) {
    if (b->device == DEVICE_CPU) model_features(&b->cpu, batch, features);
    else gpu_model_features(b->gpu, batch, features);
}
