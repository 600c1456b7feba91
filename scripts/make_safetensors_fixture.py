#!/usr/bin/python3
"""The safetensors compatibility fixture, written by the official library.

    /usr/bin/python3 -m pip install --target /tmp/st safetensors
    PYTHONPATH=/tmp/st /usr/bin/python3 scripts/make_safetensors_fixture.py \
        [--out tests/fixtures/safetensors/official.safetensors] [--check FILE.safetensors ...]

Writes tests/fixtures/safetensors/official.safetensors with Hugging Face's
`safetensors` package (the one transformers uses), so that
tests/test_safetensors.c reads a file igpt did not write itself: F32, F16,
BF16 and F64 tensors holding values whose fp32 conversions the test knows by
hand (negative zero, subnormals, infinities, NaN, an F64 beyond fp32's range),
a scalar, an empty tensor, an I32 tensor (which safetensors_read_f32 must
refuse) and "__metadata__". BF16 needs PyTorch (Debian's python3-torch);
numpy is Debian's python3-numpy. The tests never need the package: the file
is committed (about 600 bytes).

--check FILE: loads files igpt wrote (safetensors_write) with the official
library and prints their tensors, to confirm that they are readable there.
"""
import argparse

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

# Every value below is exact in its dtype, so the test compares bits.
F32 = np.array([[0.0, -0.0, 1.5], [-2.25, 3.4028234663852886e38, 1.401298464324817e-45]], dtype=np.float32)
# 2^-24 is float16's smallest subnormal, 65504 its largest normal.
F16 = np.array([[0.0, -0.0, 1.0, -2.0], [65504.0, 2.0**-24, np.inf, -np.inf]], dtype=np.float16)
F16_NAN = np.array([np.nan], dtype=np.float16)
BF16 = torch.tensor([1.0, -1.5, 2.0**-133, -np.inf], dtype=torch.bfloat16)  # 2^-133: a bf16 subnormal
# 0.1 rounds to the float 0x3dcccccd; 1e300 is beyond fp32: -inf; 2^-140 is an fp32 subnormal.
F64 = np.array([0.1, -1e300, 2.0**-140], dtype=np.float64)


def make(path):
    tensors = {
        "f32": torch.from_numpy(F32),
        "f16": torch.from_numpy(F16),
        "f16_nan": torch.from_numpy(F16_NAN),
        "bf16": BF16,
        "f64": torch.from_numpy(F64),
        "scalar": torch.tensor(7.0, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        "i32": torch.tensor([1, -1], dtype=torch.int32),
        "layer.0.weight": torch.arange(6, dtype=torch.float32).reshape(3, 2),
    }
    save_file(tensors, path, metadata={"format": "pt", "note": "igpt fixture"})
    print(f"wrote {path}")


def check(path):
    tensors = load_file(path)
    print(f"{path}: read by safetensors: {len(tensors)} tensors")
    for name, value in tensors.items():
        print(f"  {name} {value.dtype} {list(value.shape)} {value.ravel()[:4].tolist()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures/safetensors/official.safetensors")
    parser.add_argument("--check", nargs="*", default=[], help="files igpt wrote, to load with safetensors")
    args = parser.parse_args()
    if args.check:
        for path in args.check:
            check(path)
    else:
        make(args.out)
