#!/usr/bin/env python3
"""The static check of the real nvcc build, run by `make test`: it reads the
machine code (SASS) that the GPU would run, so part of what a GPU run would
show is seen without one.

For sm_80 and sm_90, in build/cuda/igpt_cuda_tests (every kernel of ./igpt
and of the CUDA tests):
- the kernels of TENSOR_CORE_KERNELS contain HMMA, the tensor-core
  instruction: a kernel that ends up on CUDA cores (FFMA) fails, and so does a
  table row that matches no kernel (renamed kernels cannot pass silently);
  rows marked pending are a skip until their kernels exist;
- no kernel uses local memory: no LDL/STL instruction and no stack frame
  (cuobjdump -res-usage), which is where spilled registers and arrays the
  compiler cannot keep in registers go, ~100x slower than registers.
  KNOWN_LOCAL_MEMORY lists the kernels that do today, each with its reason; a
  row that no longer matches such a kernel fails, so the list cannot go stale.
Self-tests plant each fault (tests/cuda/sass_check_kernels.cu) and require it
to be caught. Without cuobjdump and nvdisasm (scripts/setup.sh installs both)
or without the nvcc build, every check says "skip" with the reason.

    python3 tests/check_sass.py                    # the checks; "N passed, N failed" last
    python3 tests/check_sass.py --all              # the same, disassembling every kernel (slower)
    python3 tests/check_sass.py --resource-table   # registers, shared memory, stack of ./igpt's kernels (markdown)
"""
import glob
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("sm_80", "sm_90")
TEST_BINARY = "build/cuda/igpt_cuda_tests"
PLANTED = "sass_check_planted_"

# Kernels that must run on tensor cores: (base name, as a regular expression
# matched in full; what they are; pending: a skip, not a failure, while no
# kernel matches -- set it to False once they are on main).
TENSOR_CORE_KERNELS = [
    (r"flash_attention_\w+", "causal attention forward/backward on tensor cores (issue 12, part 1)", False),
    (r"(test_)?mma_\w+", "the fragment test kernels of cuda/mma.cuh (tests/cuda/test_mma.cu)", False),
    (r"sass_check_mma_kernel", "inline mma.sync m16n8k16 (tests/cuda/sass_check_kernels.cu)", False),
]

# Kernels that use local memory today, and why: (base name, full match; reason).
KNOWN_LOCAL_MEMORY = [
    (r"attention_forward_kernel",
     "the portable kernel's 16 scores per chunk (s[16]) go to a 64-byte stack at head sizes 64 and 128, "
     "read back in the hot loop; issue 12 part 1 moves these head sizes to tensor cores"),
]


def find_tool(name, env, subdir):
    """A CUDA tool: $env, PATH, nvcc's folder, then scripts/setup.sh's .tools/<subdir>/nvidia/*/bin."""
    if os.environ.get(env):  # a file, or (NVDISASM_PATH, as cuobjdump reads it) its folder
        given = os.environ[env]
        given = given if os.path.isfile(given) else os.path.join(given, name)
        return given if os.access(given, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    candidates = [os.path.join(os.path.dirname(nvcc), name)]
    candidates += sorted(glob.glob(os.path.join(ROOT, ".tools", subdir, "nvidia", "*", "bin", name)))
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def cuobjdump_env():
    """cuobjdump and the environment it needs (it runs nvdisasm for -sass), or None and why not."""
    cuobjdump = find_tool("cuobjdump", "CUOBJDUMP", "cuda")
    if not cuobjdump:
        return None, None, "no cuobjdump (scripts/setup.sh installs it from PyPI, nvidia-cuda-cuobjdump)"
    nvdisasm = find_tool("nvdisasm", "NVDISASM_PATH", "nvdisasm")
    if not nvdisasm:
        return None, None, "no nvdisasm, which cuobjdump -sass runs (scripts/setup.sh: PyPI nvidia-cuda-nvdisasm)"
    env = dict(os.environ, NVDISASM_PATH=os.path.dirname(nvdisasm))
    return cuobjdump, env, None


def run(args, env=None):
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()[:400]}")
    return r.stdout


def base_name(symbol):
    """"_Z<length><name>..." (kernels are free functions) -> name; extern "C" names as they are."""
    m = re.match(r"_Z(\d+)", symbol)
    return symbol[m.end():m.end() + int(m.group(1))] if m else symbol


def demangled(symbols):
    """Readable names: c++filt's, without the return type and parameters, bf16 for __nv_bfloat16."""
    if not symbols or not shutil.which("c++filt"):
        return {s: s for s in symbols}
    lines = run(["c++filt"] + list(symbols)).splitlines()
    out = {}
    for s, d in zip(symbols, lines):
        d = re.sub(r"^void ", "", d)
        d = d[:d.rfind("(")] if d.endswith(")") and "(" in d else d
        out[s] = d.replace("__nv_bfloat16", "bf16")
    return out


def split_by_arch(text):
    """cuobjdump output over every fatbin -> {arch: the text of its cubins} (PTX sections left out)."""
    parts, arch, is_elf = {}, None, False
    for line in text.splitlines():
        if line.startswith("Fatbin "):
            arch = None
            is_elf = line.startswith("Fatbin elf code")
            continue
        m = re.match(r"arch = (sm_\d+)", line)
        if m and is_elf:
            arch = m.group(1)
        elif arch:
            parts.setdefault(arch, []).append(line)
    return {a: "\n".join(lines) for a, lines in parts.items()}


def parse_sass(text):
    """cuobjdump -sass of one arch -> {symbol: [(address, instruction), ...]}."""
    functions, current = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            current = functions.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
        if m and current is not None:
            current.append((m.group(1), m.group(2)))
    return functions


def parse_resources(text):
    """cuobjdump -res-usage of one arch -> {symbol: {"REG": n, "STACK": n, "SHARED": n, "LOCAL": n, ...}}."""
    usage, current = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            current = m.group(1)
            continue
        if current and "REG:" in line:
            usage[current] = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", line)}
            current = None
    return usage


def opcode(instruction):
    """"@P0 LDL.64 R2, [R1+0x8]" -> "LDL"."""
    words = instruction.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].split(".")[0] if words else ""


def read_binary(binary, cuobjdump, env, disassemble):
    """{arch: {"resources": {symbol: ...}, "sass": {symbol: [...]}}} for ARCHS, from the fatbins of binary.

    Every kernel's resources (cuobjdump -res-usage, instant), and the SASS of the kernels that
    disassemble(symbol, resources) picks, or of all of them when it is None (nvdisasm takes ~6 s
    of CPU per arch for the whole test program).
    """
    resources = split_by_arch(run([cuobjdump, "-res-usage", binary], env))
    archs = {a: {"resources": parse_resources(resources.get(a, "")), "sass": {}} for a in ARCHS}
    wanted = sorted({s for c in archs.values() for s, r in c["resources"].items()
                     if disassemble is None or disassemble(s, r)})
    if wanted:
        # Kernels absent from one of the many fatbins are warnings, on stderr.
        args = [cuobjdump, "-sass", binary] if disassemble is None else [cuobjdump, "-sass", "-fun", ",".join(wanted),
                                                                         binary]
        for arch, text in split_by_arch(run(args, env)).items():
            if arch in archs:
                archs[arch]["sass"] = parse_sass(text)
    return archs


# --- The checks: each returns (status, message) rows, status "ok", "FAIL" or "skip" --------

def check_tensor_cores(archs, table, names):
    rows = []
    for pattern, what, pending in table:
        for arch, code in archs.items():
            kernels = sorted(s for s in code["resources"] if re.fullmatch(pattern, base_name(s)))
            if not kernels:
                if pending:
                    rows.append(("skip", f"{arch}: pending: no kernel matches {pattern} ({what}); "
                                         "TENSOR_CORE_KERNELS in tests/check_sass.py"))
                else:
                    rows.append(("FAIL", f"{arch}: no kernel matches {pattern} ({what}): renamed? "
                                         "update TENSOR_CORE_KERNELS in tests/check_sass.py"))
                continue
            without = [s for s in kernels if not any(opcode(i) == "HMMA" for _, i in code["sass"].get(s, []))]
            if without:
                for s in without:
                    ffma = sum(opcode(i) == "FFMA" for _, i in code["sass"].get(s, []))
                    rows.append(("FAIL", f"{arch}: {names.get(s, s)} has no HMMA ({ffma} FFMA): not on tensor "
                                         f"cores ({what})"))
                continue
            hmma = sum(opcode(i) == "HMMA" for s in kernels for _, i in code["sass"][s])
            note = "; its row is still marked pending: set it to False" if pending else ""
            rows.append(("ok", f"{arch}: {len(kernels)} kernel(s) {pattern} hold HMMA ({hmma} in all){note}"))
    return rows


def local_memory_uses(code, symbol):
    """What makes one kernel use local memory, as text, or [] when nothing does."""
    found = []
    ldst = [(a, i) for a, i in code["sass"].get(symbol, []) if opcode(i) in ("LDL", "STL")]
    if ldst:
        a, i = ldst[0]
        found.append(f"{len(ldst)} LDL/STL, first /*{a}*/ {i}")
    res = code["resources"].get(symbol, {})
    if res.get("STACK", 0) or res.get("LOCAL", 0):
        found.append(f"stack {res.get('STACK', 0)} bytes, local {res.get('LOCAL', 0)} bytes")
    return found


def check_local_memory(archs, known, names, skip_planted=True):
    rows = []
    for arch, code in archs.items():
        symbols = sorted(code["resources"])
        if skip_planted:
            symbols = [s for s in symbols if not base_name(s).startswith(PLANTED)]
        using = {s: local_memory_uses(code, s) for s in symbols}
        using = {s: u for s, u in using.items() if u}
        for pattern, reason in known:
            matched = [s for s in using if re.fullmatch(pattern, base_name(s))]
            if not matched:
                rows.append(("FAIL", f"{arch}: KNOWN_LOCAL_MEMORY lists {pattern}, but no such kernel uses local "
                                     "memory any more: remove its row from tests/check_sass.py"))
                continue
            listed = ", ".join(f"{names.get(s, s)} ({'; '.join(using[s])})" for s in matched)
            rows.append(("ok", f"{arch}: known, {reason}: {listed}"))
            for s in matched:
                del using[s]
        rows += [("FAIL", f"{arch}: local memory in {names.get(s, s)}: {'; '.join(u)}") for s, u in using.items()]
        if not using:
            rows.append(("ok", f"{arch}: no other kernel of {len(symbols)} uses local memory (stack, LDL/STL)"))
    return rows


def self_tests(archs, names):
    """The planted faults of tests/cuda/sass_check_kernels.cu must be caught, with the kernel named."""
    rows = []
    planted_ffma = [("sass_check_planted_ffma_kernel", "planted: FFMA only", False)]
    got = check_tensor_cores(archs, planted_ffma, names)
    caught = all(s == "FAIL" and "sass_check_planted_ffma_kernel" in m and "no HMMA" in m for s, m in got)
    rows.append(("ok" if caught else "FAIL", "self-test: a listed kernel without HMMA fails the tensor-core check"))
    renamed = [("sass_check_mma_kernel_renamed", "planted: a renamed kernel", False)]
    got = check_tensor_cores(archs, renamed, names)
    caught = all(s == "FAIL" and "no kernel matches" in m for s, m in got)
    rows.append(("ok" if caught else "FAIL", "self-test: a listed name that matches no kernel fails"))
    pending = [("sass_check_mma_kernel_renamed", "planted: not yet written", True)]
    got = check_tensor_cores(archs, pending, names)
    rows.append(("ok" if all(s == "skip" for s, _ in got) else "FAIL",
                 "self-test: a pending name that matches no kernel is a skip"))
    local = {a: {"sass": c["sass"],
                 "resources": {s: v for s, v in c["resources"].items() if base_name(s).startswith(PLANTED)}}
             for a, c in archs.items()}
    got = check_local_memory(local, [], names, skip_planted=False)
    failures = [m for s, m in got if s == "FAIL"]
    caught = len(failures) == len(archs) and all(
        "sass_check_planted_local_memory_kernel" in m and re.search(r"\b(LDL|STL)\b", m) for m in failures)
    rows.append(("ok" if caught else "FAIL", "self-test: a kernel with a local array fails the local-memory check, "
                                             "named with its LDL/STL"))
    stale = [("sass_check_planted_ffma_kernel", "planted: known, but uses no local memory")]
    got = check_local_memory(local, stale, names, skip_planted=False)
    caught = any(s == "FAIL" and "no such kernel uses local memory" in m for s, m in got)
    rows.append(("ok" if caught else "FAIL", "self-test: a stale KNOWN_LOCAL_MEMORY row fails"))
    return rows


def resource_table(binary):
    """Markdown: registers, static shared memory and stack of every kernel of binary, for each arch."""
    cuobjdump, env, why = cuobjdump_env()
    if not cuobjdump:
        sys.exit(f"check_sass: {why}")
    archs = read_binary(binary, cuobjdump, env, None)
    symbols = sorted(set().union(*(c["resources"] for c in archs.values())), key=lambda s: (base_name(s), s))
    names = demangled(symbols)
    head = " | ".join(f"{a} regs | {a} smem | {a} stack | {a} LDL/STL" for a in ARCHS)
    lines = [f"| kernel | {head} |", "| --- |" + " ---: |" * (4 * len(ARCHS))]
    for s in symbols:
        cells = []
        for a in ARCHS:
            r = archs[a]["resources"].get(s, {})
            ldst = sum(opcode(i) in ("LDL", "STL") for _, i in archs[a]["sass"].get(s, []))
            cells += [str(r.get("REG", "")), str(r.get("SHARED", "")), str(r.get("STACK", "")), str(ldst)]
        lines.append(f"| `{names[s]}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def worth_disassembling(symbol, resources):
    """The kernels whose SASS the checks read: the tensor-core table's, those with a stack frame or
    local memory (every LDL/STL addresses one; their SASS names the instructions), the planted ones.
    --all disassembles every kernel instead."""
    name = base_name(symbol)
    return (any(re.fullmatch(p, name) for p, _, _ in TENSOR_CORE_KERNELS) or resources.get("STACK", 0) > 0 or
            resources.get("LOCAL", 0) > 0 or name.startswith(PLANTED))


def check_binary(binary, cuobjdump, env, disassemble_all):
    try:
        archs = read_binary(binary, cuobjdump, env, None if disassemble_all else worth_disassembling)
    except RuntimeError as e:
        return [("FAIL", f"cuobjdump could not read {TEST_BINARY}: {e}")]
    missing = [a for a, c in archs.items() if not c["resources"]]
    if missing:
        return [("FAIL", f"{TEST_BINARY} holds no {' '.join(missing)} code")]
    names = demangled(sorted(set().union(*(c["resources"] for c in archs.values()))))
    return (check_tensor_cores(archs, TENSOR_CORE_KERNELS, names) +
            check_local_memory(archs, KNOWN_LOCAL_MEMORY, names) + self_tests(archs, names))


def main():
    if "--resource-table" in sys.argv[1:]:
        args = [a for a in sys.argv[1:] if a != "--resource-table"]
        print(resource_table(args[0] if args else "igpt"))
        return 0
    passed = failed = 0

    def report(status, message):
        nonlocal passed, failed
        print(f"{status:<4}  {message}")
        passed += status == "ok"
        failed += status == "FAIL"

    cuobjdump, env, why = cuobjdump_env()
    binary = os.path.join(ROOT, TEST_BINARY)
    if not cuobjdump:
        report("skip", f"SASS checks: {why}")
    elif not os.path.exists(binary):
        report("skip", f"SASS checks: no {TEST_BINARY} (make builds it where nvcc is found)")
    else:
        for row in check_binary(binary, cuobjdump, env, "--all" in sys.argv[1:]):
            report(*row)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
