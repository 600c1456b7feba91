#!/usr/bin/python3
"""Independent solution of the linear probe's problem with SciPy, as a test fixture.

    /usr/bin/python3 tests/reference/probe_reference.py --write-fixture tests/fixtures/probe_reference.bin
    /usr/bin/python3 tests/reference/probe_reference.py --write-kfold-fixture tests/fixtures/probe_kfold.bin

The problem (src/probe/probe.h): multinomial logistic regression, objective =
mean cross-entropy + l2/2 * ||W||^2 with unpenalised biases, on a small seeded
dataset of overlapping Gaussian classes. SciPy's L-BFGS-B solves it to a
gradient norm far below the C solver's tolerance; the fixture keeps the data,
the optimum's objective, its weights and its predictions. Needs python3-scipy.

The k-fold fixture: the selection of ./igpt probe --select kfold on a small
problem (float32 features standardised with the training statistics, a fixed
fold assignment, a grid of L2 strengths): every fold's probe solved
independently, the cross-validation accuracy at each strength, the chosen
strength (ties: the stronger), and the accuracy on evaluation rows of the
fit on every training row at that strength.
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


def solve(X, y, k, l2):
    d = X.shape[1]
    res = minimize(objective, np.zeros(k * (d + 1)), args=(X, y, k, l2), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 100000})
    return res.x.reshape(k, d + 1)


def predict(W, X):
    d = X.shape[1]
    return (X @ W[:, :d].T + W[:, d]).argmax(axis=1)


def write_kfold_fixture(path):
    rng = np.random.default_rng(7)
    n, n_eval, d, k, folds = 90, 60, 8, 3, 3
    grid = np.array([3.0, 0.3, 0.03, 0.003, 0.0003])
    centers = rng.normal(0, 0.6, (k, d))
    y = np.arange(n) % k
    y_eval = np.arange(n_eval) % k
    X = (centers[y] + rng.normal(0, 1.0, (n, d)) * 2.0 + 5.0).astype(np.float32)
    X_eval = (centers[y_eval] + rng.normal(0, 1.0, (n_eval, d)) * 2.0 + 5.0).astype(np.float32)
    fold = rng.permutation(np.arange(n) % folds)
    mean = X.astype(np.float64).mean(axis=0)
    std = np.maximum(np.sqrt(((X.astype(np.float64) - mean) ** 2).mean(axis=0)), 1e-6)
    Xs, Xe = (X - mean) / std, (X_eval - mean) / std
    cv = np.zeros(len(grid))
    for g, l2 in enumerate(grid):
        correct = 0
        for j in range(folds):
            W = solve(Xs[fold != j], y[fold != j], k, l2)
            correct += (predict(W, Xs[fold == j]) == y[fold == j]).sum()
        cv[g] = correct / n
    best = int(np.argmax(cv))  # the first of the best: grid strongest first, so ties keep the stronger
    W = solve(Xs, y, k, grid[best])
    accuracy = (predict(W, Xe) == y_eval).mean()
    print(f"k-fold: cv {cv}, chosen l2 {grid[best]}, eval accuracy {accuracy:.4f}")
    write_fixture(path, [
        ("X", X), ("y", y.astype(np.int32)), ("X_eval", X_eval), ("y_eval", y_eval.astype(np.int32)),
        ("fold", fold.astype(np.int32)), ("l2", grid), ("cv_accuracy", cv), ("chosen_l2", np.array([grid[best]])),
        ("eval_accuracy", np.array([accuracy])),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-fixture")
    parser.add_argument("--write-kfold-fixture")
    args = parser.parse_args()
    if args.write_kfold_fixture:
        write_kfold_fixture(args.write_kfold_fixture)
    if not args.write_fixture:
        return
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
