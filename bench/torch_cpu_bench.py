#!/usr/bin/python3
"""The iGPT model (docs/model.md) in ordinary PyTorch, timed on the CPU.

    /usr/bin/python3 bench/torch_cpu_bench.py --config xs --side 16 --batch 8 --threads 2

Times forward + backward (no optimizer step) on random tokens after warm-up
steps and prints one JSON line, like ./igpt bench, for bench/bench_cpu.sh.
Attention uses scaled_dot_product_attention where this PyTorch has it (2.0+:
on the CPU its flash kernel, aten::_scaled_dot_product_flash_attention_for_cpu),
else the usual masked matmul-softmax-matmul; the JSON line says which, with the
torch version, its CPU kernels' ISA and whether oneDNN (mkldnn) is available.
bench/bench_cpu.sh runs it with the PyTorch 2.11 of .tools/torch (through
bench/torch_python.sh), or Debian's 1.13.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

CONFIGS = {"tiny": (64, 2, 4), "xs": (256, 12, 8), "s": (512, 24, 8), "m": (1024, 36, 8), "l": (1536, 48, 16)}


class Norm(torch.nn.Module):  # the iGPT norm: no mean subtraction, no bias
    def __init__(self, C):
        super().__init__()
        self.g = torch.nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * self.g


class Block(torch.nn.Module):
    def __init__(self, C, NH, T):
        super().__init__()
        self.NH = NH
        self.n1, self.n2 = Norm(C), Norm(C)
        self.qkv = torch.nn.Linear(C, 3 * C, bias=False)
        self.proj = torch.nn.Linear(C, C, bias=False)
        self.fc = torch.nn.Linear(C, 4 * C, bias=False)
        self.fc_proj = torch.nn.Linear(4 * C, C, bias=False)
        self.register_buffer("causal", torch.tril(torch.ones(T, T, dtype=torch.bool)), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in self.qkv(self.n1(x)).split(C, -1))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(C // self.NH)
            y = s.masked_fill(~self.causal, float("-inf")).softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        h = self.fc(self.n2(x))
        return x + self.fc_proj(h * torch.sigmoid(1.702 * h))


class IGPT(torch.nn.Module):
    def __init__(self, V, T, C, L, NH):
        super().__init__()
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Parameter(0.01 * torch.randn(T, C))
        self.sos = torch.nn.Parameter(0.02 * torch.randn(C))
        self.blocks = torch.nn.ModuleList(Block(C, NH, T) for _ in range(L))
        self.lnf = Norm(C)
        self.head = torch.nn.Linear(C, V, bias=False)

    def forward(self, tokens):
        B = tokens.shape[0]
        h = torch.cat([self.sos.expand(B, 1, -1), self.wte(tokens[:, :-1])], 1) + self.wpe
        for block in self.blocks:
            h = block(h)
        logits = self.head(self.lnf(h))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", choices=CONFIGS)
    p.add_argument("--side", type=int, default=16)
    p.add_argument("--colors", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup-steps", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    C, L, NH = CONFIGS[a.config]
    T = a.side * a.side
    model = IGPT(a.colors, T, C, L, NH)
    tokens = torch.randint(0, a.colors, (a.batch, T))
    elapsed = 0.0
    for step in range(a.warmup_steps + a.steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(tokens).backward()
        if step >= a.warmup_steps:
            elapsed += time.perf_counter() - t0
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "cpu_capability": capability,
                      "mkldnn": torch.backends.mkldnn.is_available(),
                      "attention": "sdpa" if hasattr(F, "scaled_dot_product_attention") else "masked-matmul",
                      "config": a.config, "side": a.side,
                      "batch": a.batch, "threads": a.threads, "tokens_per_s": round(a.steps * a.batch * T / elapsed, 1),
                      "step_s": round(elapsed / a.steps, 4)}))


if __name__ == "__main__":
    main()
