#!/usr/bin/env python3
"""The same iGPT model in PyTorch on a GPU, the way a PyTorch user would
train it fast: bf16 autocast, torch.compile, scaled_dot_product_attention,
fused AdamW. bench/bench_gpu.sh sets its figures beside ./igpt's.

    python3 bench/torch_gpu_bench.py --mode train --config s --side 32 --batch 32
    python3 bench/torch_gpu_bench.py --mode attention --batch-heads 64 --seq 1024 --head-size 64 --backends flash

train: whole optimizer steps (forward, backward, gradient clipping, AdamW) on
random tokens, timed after warm-up steps (which include compilation).
attention: SDPA alone, causal, bf16, with the flash and the cuDNN backends
(--backends: one of them, so that scripts/gpu_check.sh runs each in its own
process under its own timeout); forward and backward milliseconds and
TFLOP/s counted as ./igpt bench does (forward 2 T^2 hs per head, backward 2.5
times that).
Each prints one JSON line per measurement; a backend this GPU or this
PyTorch lacks, or no GPU at all, gives a line with "error" and exit status 3.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_cpu_bench import CONFIGS, IGPT  # noqa: E402  (the model, written once)


def time_ms(fn, iters):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def bench_train(a):
    C, L, NH = CONFIGS[a.config]
    T = a.side * a.side
    torch.manual_seed(0)
    model = IGPT(a.colors, T, C, L, NH).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, fused=True)
    step_model = torch.compile(model) if a.compile else model
    tokens = torch.randint(0, a.colors, (a.batch, T), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup_steps):
        step()
    torch.cuda.synchronize()
    ms = time_ms(step, a.steps)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "compile": a.compile, "config": a.config,
                      "side": a.side, "batch": a.batch, "tokens_per_s": round(a.batch * T / (ms / 1e3), 1),
                      "step_s": round(ms / 1e3, 5)}), flush=True)


def bench_attention(a):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    refused = 0
    q, k, v = (torch.randn(1, a.batch_heads, a.seq, a.head_size, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    fwd_flops = 4.0 * a.batch_heads * a.seq * a.seq * a.head_size * 0.5
    for name in a.backends.split(","):
        try:
            with sdpa_kernel(backends[name]):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                dy = torch.randn_like(y)
                fwd = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), a.steps)

                def fwd_bwd():
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    torch.autograd.grad(out, (q, k, v), dy)

                both = time_ms(fwd_bwd, a.steps)
            bwd = both - fwd
            print(json.dumps({"impl": "pytorch-sdpa-" + name, "batch_heads": a.batch_heads, "seq": a.seq,
                              "head_size": a.head_size, "forward_ms": round(fwd, 4), "backward_ms": round(bwd, 4),
                              "forward_tflops": round(fwd_flops / (fwd * 1e9), 2),
                              "backward_tflops": round(2.5 * fwd_flops / (bwd * 1e9), 2)}), flush=True)
        except RuntimeError as e:  # a backend this GPU or build lacks
            print(json.dumps({"impl": "pytorch-sdpa-" + name, "error": str(e).splitlines()[0]}), flush=True)
            refused += 1
    return 3 if refused else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="train", choices=["train", "attention"])
    p.add_argument("--config", default="s", choices=CONFIGS)
    p.add_argument("--side", type=int, default=32)
    p.add_argument("--colors", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--batch-heads", type=int, default=64)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--head-size", type=int, default=64)
    p.add_argument("--backends", default="flash,cudnn", help="attention: flash, cudnn or both, comma-separated")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"impl": "pytorch", "error": "PyTorch sees no GPU", "torch": torch.__version__}), flush=True)
        sys.exit(3)
    if a.mode == "train":
        bench_train(a)
    else:
        sys.exit(bench_attention(a))


if __name__ == "__main__":
    main()
