#!/usr/bin/python3
"""Independent solution of the linear probe's problem with SciPy, as a test fixture.

    /usr/bin/python3 tests/reference/probe_reference.py --write-fixture tests/fixtures/probe_reference.bin

The problem (src/probe/probe.h): multinomial logistic regression, objective =
mean cross-entropy + l2/2 * ||W||^2 with unpenalised biases, on a small seeded
dataset of overlapping Gaussian classes. SciPy's L-BFGS-B solves it to a
gradient norm far below the C solver's tolerance; the fixture keeps the data,
the optimum's objective, its weights and its predictions. Needs python3-scipy.
"""
import argparse
import struct

import numpy as np
from scipy.optimize import minimize


def objective(theta, X, y, k, l2):
    n, d = X.shape
    W = theta.reshape(k, d + 1)
    z = X @ W[:, :d].T + W[:, d]
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean() + 0.5 * l2 * (W[:, :d] ** 2).sum()
    p[np.arange(n), y] -= 1
    p /= n
    grad = np.zeros_like(W)
    grad[:, :d] = p.T @ X + l2 * W[:, :d]
    grad[:, d] = p.sum(axis=0)
    return loss, grad.ravel()


def write_fixture(path, arrays):
    codes = {np.float32: 0, np.int32: 1, np.float64: 2}
    with open(path, "wb") as f:
        f.write(b"IGPTFIX1" + struct.pack("<I", len(arrays)))
        for name, a in arrays:
            a = np.ascontiguousarray(a)
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<II", codes[a.dtype.type], a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-fixture", required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    n, d, k, l2 = 150, 6, 4, 0.05
    centers = rng.normal(0, 1.0, (k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(0, 1.0, (n, d))
    res = minimize(objective, np.zeros(k * (d + 1)), args=(X, y, k, l2), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 100000})
    loss, grad = objective(res.x, X, y, k, l2)
    W = res.x.reshape(k, d + 1)
    predictions = (X @ W[:, :d].T + W[:, d]).argmax(axis=1)
    print(f"scipy: objective {loss:.12f}, gradient norm {np.linalg.norm(grad):.2e}, "
          f"accuracy {(predictions == y).mean():.3f}, {res.nit} iterations")
    write_fixture(args.write_fixture, [
        ("X", X.astype(np.float64)), ("y", y.astype(np.int32)), ("l2", np.array([l2])),
        ("objective", np.array([loss])), ("W", W), ("predictions", predictions.astype(np.int32)),
    ])


if __name__ == "__main__":
    main()
