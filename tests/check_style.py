#!/usr/bin/env python3
"""Style checks of the sources, run by `make test`: every C, CUDA and C++
source is formatted as .clang-format says (clang-format --dry-run); one
statement per line (clang's -Wcomma finds statements chained with the comma
operator); the modules (a header and its source) include each other without
a cycle. Prints one line per check and "N passed, N failed" last, like the
other suites.

    python3 tests/check_style.py            # check
    python3 tests/check_style.py --fix      # reformat in place (then review the diff)
"""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIRS = ["src", "cuda", "bench", "tests", "fuzz"]
EXTENSIONS = (".c", ".h", ".cu", ".cuh", ".cpp")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources():
    out = subprocess.run(["git", "ls-files", *SOURCE_DIRS], cwd=ROOT, capture_output=True, text=True, check=True)
    return sorted(f for f in out.stdout.split() if f.endswith(EXTENSIONS))


def unformatted(files, fix):
    bad = []
    for f in files:
        path = os.path.join(ROOT, f)
        if fix:
            subprocess.run(["clang-format", "-i", "--style=file", path], check=True)
            continue
        r = subprocess.run(["clang-format", "--dry-run", "--Werror", "--style=file", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            first = next((l for l in r.stderr.splitlines() if "error:" in l), r.stderr.strip()[:200])
            bad.append(f"{f}: {first}")
    return bad


def compile_flags(path):
    """clang flags to parse `path` as the Makefile builds it (the CUDA sources as the interpret mode does)."""
    flags = ["-fsyntax-only", "-Wcomma", "-fopenmp", "-Isrc", "-Ithird_party", "-Itests", "-Itests/cuda", "-Ibuild",
             "-isystem", "/usr/include/%s/openblas-openmp" % multiarch()]
    if path.endswith((".cu", ".cpp")):
        return ["clang++", "-x", "c++", "-std=c++20", "-DIGPT_INTERPRET", "-Icuda"] + flags
    mpi = subprocess.run(["mpicc", "--showme:compile"], capture_output=True, text=True) if shutil.which("mpicc") else None
    mpi_flags = ["-DIGPT_MPI"] + mpi.stdout.split() if mpi and mpi.returncode == 0 else []
    return ["clang", "-std=c11", "-D_DEFAULT_SOURCE", "-D_POSIX_C_SOURCE=200809L"] + mpi_flags + flags


def multiarch():
    r = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True)
    return r.stdout.strip() or "x86_64-linux-gnu"


def comma_statements(files):
    """Statements chained with the comma operator, as clang -Wcomma reports them (headers through their users)."""
    found = set()
    for f in files:
        if not f.endswith((".c", ".cu", ".cpp")):
            continue
        r = subprocess.run(compile_flags(f) + [f], cwd=ROOT, capture_output=True, text=True)
        for line in r.stderr.splitlines():
            if "[-Wcomma]" in line:
                found.add(line.split(": warning")[0])
            elif ": error:" in line:
                found.add(f"{f}: clang cannot parse it: {line}")
    return sorted(found)


def resolve(including, name):
    """The repository path an #include "name" in file `including` refers to, or None (system, vendored)."""
    for base in (os.path.dirname(including), "src", "cuda", "tests", "tests/cuda"):
        candidate = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(ROOT, candidate)):
            return candidate
    return None


def include_cycles(files):
    graph = {}
    for f in files:
        text = open(os.path.join(ROOT, f), encoding="utf-8", errors="replace").read()
        graph[f] = [t for t in (resolve(f, n) for n in INCLUDE.findall(text)) if t]
    # A header and its source are one module: a.h -> b.h and b.c -> a.h is a cycle a <-> b.
    def module(path):
        return os.path.splitext(path)[0]
    edges = {}
    for f, targets in graph.items():
        for t in targets:
            if module(t) != module(f):
                edges.setdefault(module(f), set()).add(module(t))
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return cycles


def main():
    fix = "--fix" in sys.argv[1:]
    passed = failed = 0

    def report(ok, name, details):
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'}  {name}")
        for d in details[:20]:
            print(f"      {d}")
        passed += ok
        failed += not ok

    files = sources()
    if shutil.which("clang-format"):
        bad = unformatted(files, fix)
        report(not bad, f"{len(files)} sources formatted as .clang-format says", bad)
    else:
        report(False, "clang-format is installed (scripts/setup.sh installs it)", [])
    if shutil.which("clang"):
        chained = comma_statements(files)
        report(not chained, "one statement per line (no statements chained with commas, clang -Wcomma)", chained)
    else:
        report(False, "clang is installed (scripts/setup.sh installs it)", [])
    cycles = include_cycles(files)
    report(not cycles, "no include cycle between modules", cycles)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
