#!/usr/bin/python3
"""Independent PyTorch reference of the iGPT model in docs/model.md.

Built from the documentation alone (not from the C code) in float64, it
writes the fixtures that `make test` compares the CPU model against:

    /usr/bin/python3 tests/reference/igpt_reference.py --write-fixtures tests/fixtures
    /usr/bin/python3 tests/reference/igpt_reference.py --check   # its own gradients vs finite differences

Uses Debian's python3-torch (scripts/setup.sh --bench installs it).
"""
import argparse
import math
import os
import struct

import torch

# --- parameter layout (docs/model.md, "Parameter layout") ---------------------------------


def layout(V, T, C, L, norm):
    """(name, shape, init) in buffer order; init is ('normal', std), 'ones' or 'zeros'."""
    ln = norm == 1
    out = [("wte", (V, C), ("normal", 0.02)), ("wpe", (T, C), ("normal", 0.01)), ("sos", (C,), ("normal", 0.02))]
    for l in range(L):
        out.append((f"h{l}.ln1_g", (C,), "ones"))
        if ln:
            out.append((f"h{l}.ln1_b", (C,), "zeros"))
        out.append((f"h{l}.w_qkv", (3 * C, C), ("normal", 1 / math.sqrt(C))))
        out.append((f"h{l}.w_attn_proj", (C, C), ("normal", 1 / math.sqrt(C * L))))
        out.append((f"h{l}.ln2_g", (C,), "ones"))
        if ln:
            out.append((f"h{l}.ln2_b", (C,), "zeros"))
        out.append((f"h{l}.w_fc", (4 * C, C), ("normal", 0.02)))
        out.append((f"h{l}.w_fc_proj", (C, 4 * C), ("normal", 0.02)))
    out.append(("lnf_g", (C,), "ones"))
    if ln:
        out.append(("lnf_b", (C,), "zeros"))
    out.append(("w_head", (V, C), "zeros"))
    return out


def unflatten(flat, spec):
    tensors, offset = {}, 0
    for name, shape, _ in spec:
        n = math.prod(shape)
        tensors[name] = flat[offset:offset + n].view(shape)
        offset += n
    assert offset == flat.numel(), (offset, flat.numel())
    return tensors


DECAYED = ("wte", "wpe", "w_qkv", "w_attn_proj", "w_fc", "w_fc_proj", "w_head")


def decay_mask(spec):
    return torch.cat([torch.full((math.prod(shape),), float(name.split(".")[-1] in DECAYED), dtype=torch.float64)
                      for name, shape, _ in spec])


# --- model (docs/model.md, "Forward pass") -------------------------------------------------


def norm(x, g, b):
    if b is None:  # iGPT: no mean subtraction, no bias
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + 1e-5) * g + b


def forward(flat, tokens, cfg):
    """Returns logits (B, T, V), mean loss (nats/token), features (B, L+1, C)."""
    V, T, C, L, NH, norm_kind = cfg
    p = unflatten(flat, layout(V, T, C, L, norm_kind))
    B = tokens.shape[0]
    hs = C // NH
    bias = (lambda name: p[name]) if norm_kind == 1 else (lambda name: None)
    h = torch.cat([p["sos"].expand(B, 1, C), p["wte"][tokens[:, :-1]]], dim=1) + p["wpe"]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    features = []
    for l in range(L):
        a = norm(h, p[f"h{l}.ln1_g"], bias(f"h{l}.ln1_b"))
        features.append(a.mean(1))
        q, k, v = (a @ p[f"h{l}.w_qkv"].T).split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        y = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        h = h + y.transpose(1, 2).reshape(B, T, C) @ p[f"h{l}.w_attn_proj"].T
        m = norm(h, p[f"h{l}.ln2_g"], bias(f"h{l}.ln2_b")) @ p[f"h{l}.w_fc"].T
        h = h + (m * torch.sigmoid(1.702 * m)) @ p[f"h{l}.w_fc_proj"].T
    z = norm(h, p["lnf_g"], bias("lnf_b"))
    features.append(z.mean(1))
    logits = z @ p["w_head"].T
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tokens.reshape(-1))
    return logits, loss, torch.stack(features, dim=1)


# --- optimizer (docs/model.md, "Optimizer and schedule") -----------------------------------


def lr_at(step, lr, warmup, total, min_frac):
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    lo = lr * min_frac
    return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * p))


def adamw_step(params, grad, m, v, step, hp, mask):
    """One update by the documented formulas; returns the new (params, m, v, grad_norm)."""
    lr_max, warmup, total, min_frac, b1, b2, eps, wd, clip = hp
    lr = lr_at(step, lr_max, int(warmup), int(total), min_frac)
    norm_value = grad.norm().item()
    if clip > 0:
        c = clip / (norm_value + 1e-6)
        if c < 1:
            grad = grad * c
    t = step + 1
    params = params * (1 - lr * wd * mask)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    params = params - (lr / (1 - b1 ** t)) * m / (v.sqrt() / math.sqrt(1 - b2 ** t) + eps)
    return params, m, v, norm_value


def self_check_adamw():
    """The hand-written update equals torch.optim.AdamW + clip_grad_norm_ (decay on all of a toy tensor)."""
    torch.manual_seed(0)
    x0 = torch.randn(50, dtype=torch.float64)
    target = torch.randn(50, dtype=torch.float64)
    hp = (0.05, 3, 10, 0.1, 0.9, 0.95, 1e-8, 0.1, 0.5)
    x = torch.nn.Parameter(x0.clone())
    opt = torch.optim.AdamW([x], lr=hp[0], betas=(hp[4], hp[5]), eps=hp[6], weight_decay=hp[7])
    mine, m, v = x0.clone(), torch.zeros(50, dtype=torch.float64), torch.zeros(50, dtype=torch.float64)
    for s in range(10):
        for group in opt.param_groups:
            group["lr"] = lr_at(s, hp[0], hp[1], hp[2], hp[3])
        opt.zero_grad()
        ((x - target) ** 4).sum().backward()
        torch.nn.utils.clip_grad_norm_([x], hp[8])
        opt.step()
        g = 4 * (mine - target) ** 3
        mine, m, v, _ = adamw_step(mine, g, m, v, s, hp, torch.ones(50, dtype=torch.float64))
    err = (mine - x.detach()).abs().max().item()
    assert err < 1e-12, f"hand-written AdamW differs from torch.optim.AdamW by {err}"
    return err


# --- fixtures (docs/model.md, "Test fixtures") ----------------------------------------------


def write_fixture(path, arrays):
    codes = {torch.float32: 0, torch.int32: 1, torch.float64: 2}
    with open(path, "wb") as f:
        f.write(b"IGPTFIX1" + struct.pack("<I", len(arrays)))
        for name, t in arrays:
            t = t.contiguous()
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<II", codes[t.dtype], t.dim()) + struct.pack(f"<{t.dim()}I", *t.shape))
            f.write(t.numpy().tobytes())


def make_fixture(norm_kind, seed):
    V, T, C, L, NH, B = 13, 20, 16, 2, 2, 3
    cfg = (V, T, C, L, NH, norm_kind)
    spec = layout(V, T, C, L, norm_kind)
    gen = torch.Generator().manual_seed(seed)
    pieces = []
    for name, shape, init in spec:  # random, not the init: a zero head would hide most of the model
        base = name.split(".")[-1]
        noise = torch.randn(shape, generator=gen, dtype=torch.float64)
        pieces.append((1 + 0.1 * noise if base.endswith("_g") else 0.1 * noise if base.endswith("_b") else 0.2 * noise).reshape(-1))
    # Rounded to float32 first: the fixture stores float32 parameters, so the
    # float64 results must be those of exactly the stored values.
    params = torch.cat(pieces).float().double()
    tokens = torch.randint(0, V, (B, T), generator=gen)

    x = params.clone().requires_grad_(True)
    logits, loss, features = forward(x, tokens, cfg)
    loss.backward()
    grads = x.grad.clone()

    # Ten documented AdamW steps on the same batch. The clip threshold sits
    # half way between two gradient norms of an unclipped dry run, so some
    # steps clip and none is near the threshold (fp32 makes the same choices).
    hp_without_clip = [0.01, 3, 10, 0.1, 0.9, 0.95, 1e-8, 0.1]
    mask = decay_mask(spec)
    norms = []
    for clip_pass in range(2):
        ordered = sorted(norms)
        clip = 0.0 if clip_pass == 0 else 0.5 * (ordered[len(ordered) // 2] + ordered[len(ordered) // 2 + 1])
        hp = hp_without_clip + [clip]
        p, m, v = params.clone(), torch.zeros_like(params), torch.zeros_like(params)
        losses, norms = [], []
        for s in range(10):
            pg = p.clone().requires_grad_(True)
            _, l_s, _ = forward(pg, tokens, cfg)
            l_s.backward()
            losses.append(l_s.item())
            p, m, v, n = adamw_step(p, pg.grad, m, v, s, hp, mask)
            norms.append(n)
    clipped = [s for s, n in enumerate(norms) if n > clip]
    arrays = [
        ("config", torch.tensor([V, T, C, L, NH, norm_kind, B], dtype=torch.int32)),
        ("params", params.float()),
        ("tokens", tokens.int()),
        ("logits", logits.detach().float()),
        ("loss", torch.tensor([loss.item()], dtype=torch.float64)),
        ("grads", grads.float()),
        ("features", features.detach().float()),
        ("train_hparams", torch.tensor(hp, dtype=torch.float64)),
        ("train_losses", torch.tensor(losses, dtype=torch.float64)),
        ("train_grad_norms", torch.tensor(norms, dtype=torch.float64)),
        ("final_params", p.float()),
    ]
    return arrays, clip, clipped


def finite_difference_check(norm_kind, samples=300):
    """Autograd gradients of this reference against central differences, float64."""
    V, T, C, L, NH, B = 7, 12, 8, 2, 2, 2
    cfg = (V, T, C, L, NH, norm_kind)
    gen = torch.Generator().manual_seed(7)
    params = 0.3 * torch.randn(sum(math.prod(s) for _, s, _ in layout(V, T, C, L, norm_kind)), generator=gen,
                               dtype=torch.float64)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    x = params.clone().requires_grad_(True)
    forward(x, tokens, cfg)[1].backward()
    worst, h = 0.0, 1e-6
    for i in torch.randint(0, params.numel(), (samples,), generator=gen).tolist():
        up, down = params.clone(), params.clone()
        up[i] += h
        down[i] -= h
        fd = (forward(up, tokens, cfg)[1] - forward(down, tokens, cfg)[1]).item() / (2 * h)
        worst = max(worst, abs(fd - x.grad[i].item()))
    return worst / x.grad.abs().max().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-fixtures", metavar="DIR")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    if args.check or args.write_fixtures:
        print(f"AdamW by the formulas vs torch.optim.AdamW: max difference {self_check_adamw():.1e}")
    if args.check:
        for kind in (0, 1):
            print(f"norm {kind}: autograd vs finite differences, max relative error {finite_difference_check(kind):.2e}")
    if args.write_fixtures:
        os.makedirs(args.write_fixtures, exist_ok=True)
        for kind, name in ((0, "reference_igptnorm.bin"), (1, "reference_layernorm.bin")):
            arrays, clip, clipped = make_fixture(kind, seed=1000 + kind)
            path = os.path.join(args.write_fixtures, name)
            write_fixture(path, arrays)
            margin = min(abs(n - clip) / clip for n in [float(x) for x in arrays[9][1]])
            print(f"wrote {path} ({os.path.getsize(path)} bytes): clip {clip:.4f} active at steps {clipped}, "
                  f"nearest norm {100 * margin:.1f}% away")


if __name__ == "__main__":
    main()
