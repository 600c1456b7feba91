// What one training step of the GPU model must compute and move, kernel by
// kernel (docs/cuda.md, "The step against the roofline"): an analytic model
// that ./igpt bench prints beside its measured figures, so the first GPU run
// can be read against the roofline of the GPU it runs on.
#ifndef IGPT_BENCH_STEP_COSTS_H
#define IGPT_BENCH_STEP_COSTS_H

#include <stdbool.h>
#include <stdio.h>

#include "model/config.h"

// One operation of the step: a kernel (or a cuBLASLt product, a memset), all its launches in one step.
typedef struct {
    char name[48];
    int launches;
    double flops;        // as the ideal algorithm executes them (recomputation included)
    double model_flops;  // the part MFU counts: matrix products, nothing recomputed
    double bytes;        // DRAM traffic when each tensor is read or written once
    bool tensor_cores;   // its arithmetic is bounded by the tensor-core peak (else CUDA cores)
} KernelCost;

// A GPU's ceilings: dense tensor-core FLOP/s (bf16), CUDA-core fp32 FLOP/s, DRAM bytes/s.
typedef struct {
    const char *name;
    double tensor_flops, cuda_core_flops, bytes_per_s;
} Roofline;
extern const Roofline roofline_h200;

// Room for every row of step_kernel_costs and attention_kernel_costs.
#define STEP_COSTS_MAX 48

// The operations of one optimizer step of the GPU model (cuda/gpu_model.cu)
// at `batch` images: forward, backward (zeroing the gradients first), and
// with `optimizer` the gradient norm and AdamW. storage_bytes: 2 (bf16) or 4
// (fp32, whose products run on CUDA cores). recompute: --recompute's second
// forward of every block. Returns the number of rows written to out.
int step_kernel_costs(const ModelConfig *cfg, int batch, int storage_bytes, bool recompute, bool optimizer,
                      KernelCost *out);
// Causal attention alone (./igpt bench --mode attention): forward, backward.
int attention_kernel_costs(int batch_heads, int T, int head_size, int storage_bytes, KernelCost *out);
// The least time a kernel can take on r: its FLOPs at the peak or its bytes at full bandwidth.
double kernel_roofline_seconds(const KernelCost *k, const Roofline *r);
// Training FLOPs per token as MFU counts them (docs/cuda.md, "FLOPs, MFU and the benchmark").
double training_flops_per_token(const ModelConfig *cfg);
// Writes the table of rows (name, launches, GFLOP, MB, FLOP/byte, bound, roofline ms, share) to f,
// with the measured step beside the total when measured_s > 0.
void print_kernel_costs(FILE *f, const KernelCost *rows, int n, const Roofline *r, double measured_s);

#endif
