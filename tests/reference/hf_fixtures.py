#!/usr/bin/env python3
"""The Hugging Face ImageGPT fixtures of tests/test_hf.c, made with `transformers` itself.

    make:          tests/reference/hf_fixtures.py make [OUT_DIR]      (default tests/fixtures/hf)
    check export:  tests/reference/hf_fixtures.py check-export HF_DIR [FIXTURE_DIR]

`make` builds a small ImageGPT (4x4 images, 16 colors, 2 blocks of width 32,
2 heads of 16: a head size the GPU kernels take) with seeded random weights far from their initialisation, saves it
with `save_pretrained` (config.json, model.safetensors) beside an image
processor (preprocessor_config.json: the 16 clusters in [-1, 1]), and writes
what transformers computes from it to reference.bin (IGPTFIX1, docs/model.md
"Test fixtures"):
- three token sequences, fed as [sos, x0 .. x14] (the original iGPT's start
  token, which transformers keeps as the last vocabulary id), and for each the
  logits of all 16 positions, each pixel's cross-entropy, and the probe
  features igpt takes (the mean over positions of each block's normed input,
  ln_1(hidden_states[l]), and of the final norm's output);
- a 32x32 RGB image and the color ids the image processor gives it (the 16
  clusters are floats, as the released ones, which no 8-bit color holds).
The biases of the Conv1D layers stay zero, as in the released models (their
TensorFlow originals have none).

`check-export` loads a folder written by `./igpt export` with
`from_pretrained` and compares its logits on the same sequences with
reference.bin (make test runs it when transformers is importable).

Needs torch and transformers (Debian's python3-torch 1.13 with transformers
4.40 from PyPI made the committed files: see tests/fixtures/hf/README.md).
"""
import os
import struct
import sys

import numpy as np
import torch
from transformers import ImageGPTConfig, ImageGPTForCausalImageModeling, ImageGPTImageProcessor
import transformers

SIDE = 4
COLORS = 16
SEQUENCES = 3


def reference_tokens():
    rng = np.random.default_rng(16)
    return rng.integers(0, COLORS, size=(SEQUENCES, SIDE * SIDE))


def hf_inputs(model, tokens):
    sos = model.config.vocab_size - 1
    ids = np.concatenate([np.full((len(tokens), 1), sos), tokens[:, :-1]], axis=1)
    return torch.tensor(ids, dtype=torch.long)


def run(model, tokens):
    """Logits (B, T, V), per-pixel losses (B, T), features (B, L+1, C)."""
    with torch.no_grad():
        out = model(hf_inputs(model, tokens), output_hidden_states=True)
        logits = out.logits.double()
        target = torch.tensor(tokens, dtype=torch.long)
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        hidden = out.hidden_states  # embeddings, blocks 0..L-2 outputs, ln_f(block L-1 output)
        blocks = model.transformer.h
        features = [blocks[l].ln_1(hidden[l]).mean(1) for l in range(len(blocks))]
        features.append(hidden[len(blocks)].mean(1))
        return logits.numpy(), losses.numpy(), torch.stack(features, 1).double().numpy()


def make(out_dir):
    torch.manual_seed(16)
    rng = np.random.default_rng(61)
    config = ImageGPTConfig(vocab_size=COLORS + 1, n_positions=SIDE * SIDE, n_embd=32, n_layer=2, n_head=2)
    model = ImageGPTForCausalImageModeling(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                continue  # zero, as in the released models
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.4 * torch.randn_like(p))
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    # Float clusters, as the released ones: no 8-bit color holds them exactly.
    clusters = rng.uniform(-1, 1, size=(COLORS, 3)).astype(np.float32)
    processor = ImageGPTImageProcessor(clusters=clusters, size={"height": SIDE, "width": SIDE})
    processor.save_pretrained(out_dir)

    tokens = reference_tokens()
    logits, losses, features = run(model, tokens)
    image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)  # larger than the model's: ids only
    image_ids = processor(image, do_resize=False, return_tensors="np")["input_ids"][0]
    os.remove(os.path.join(out_dir, "generation_config.json"))  # not part of what igpt reads
    write_fixture(os.path.join(out_dir, "reference.bin"), [
        ("tokens", tokens.astype(np.int32)),
        ("logits", logits),
        ("losses", losses),
        ("features", features),
        ("image", image.astype(np.int32)),
        ("image_ids", image_ids.astype(np.int32)),
    ])
    print(f"wrote {out_dir} (transformers {transformers.__version__}, torch {torch.__version__}): "
          f"mean loss {losses.mean():.6f} nats")


# IGPTFIX1 (docs/model.md, "Test fixtures"), as tests/reference/igpt_reference.py writes it.
def write_fixture(path, arrays):
    codes = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.float64): 2}
    with open(path, "wb") as f:
        f.write(b"IGPTFIX1" + struct.pack("<I", len(arrays)))
        for name, a in arrays:
            a = np.ascontiguousarray(a)
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<II", codes[a.dtype], a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def read_fixture(path):
    types = {0: "<f4", 1: "<i4", 2: "<f8"}
    raw = open(path, "rb").read()
    assert raw[:8] == b"IGPTFIX1"
    (count,), pos, arrays = struct.unpack_from("<I", raw, 8), 12, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", raw, pos)
        name = raw[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        dtype, ndim = struct.unpack_from("<II", raw, pos)
        shape = struct.unpack_from(f"<{ndim}I", raw, pos + 8)
        pos += 8 + 4 * ndim
        a = np.frombuffer(raw, types[dtype], int(np.prod(shape)), pos).reshape(shape)
        pos += a.nbytes
        arrays[name] = a
    return arrays


def check_export(hf_dir, fixture_dir):
    ref = read_fixture(os.path.join(fixture_dir, "reference.bin"))
    model = ImageGPTForCausalImageModeling.from_pretrained(hf_dir).eval()
    processor = ImageGPTImageProcessor.from_pretrained(hf_dir)
    tokens = ref["tokens"].astype(np.int64)
    logits, losses, features = run(model, tokens)
    worst = 0.0
    for name, got in (("logits", logits), ("losses", losses), ("features", features)):
        want = ref[name]
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
        worst = max(worst, err)
        print(f"{name}: max error {err:.2e} (relative to the largest value)")
    ids = processor(ref["image"].astype(np.uint8), do_resize=False, return_tensors="np")["input_ids"][0]
    same_ids = np.array_equal(ids, ref["image_ids"].astype(np.int64))
    print(f"image processor color ids: {'same' if same_ids else 'DIFFERENT'}")
    if worst > 1e-5 or not same_ids:
        print("check-export: FAILED")
        sys.exit(1)
    print("check-export: ok")


if __name__ == "__main__":
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf")
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        make(sys.argv[2] if len(sys.argv) > 2 else here)
    elif len(sys.argv) >= 3 and sys.argv[1] == "check-export":
        check_export(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else here)
    else:
        sys.exit(__doc__)
