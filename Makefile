# igpt: `make` builds ./igpt, `make test` runs every test, `make bench-data`
# times the data pipeline on the shared CIFAR-10 images, `make bench-cpu` the
# CPU model against PyTorch, `make bench-probe` the linear probes.
#
# ./igpt holds the CPU reference and, when nvcc is found, the CUDA backend
# (cuda/*.cu for sm_80 and sm_90 with sm_90's PTX, warnings as errors, with NCCL when found);
# with mpicc found, MPI for multi-process training. The CUDA sources are
# also always built as host C++ in the interpret mode (cuda/interpret/), so
# that `make test` runs the kernels on any CPU: build/interp/igpt_cuda_tests
# and build/interp/igpt (./igpt whose "GPU" is the interpreter).
CC ?= gcc
CXX ?= g++

# --- Build modes for a GPU machine (scripts/gpu_check.sh, docs/gpu-verification.md) ----------
# make GPU_ONLY=1: on a machine with the CUDA toolkit and nothing else, build/gpu-only/igpt
# and its CUDA tests: plain C matrix products for the CPU reference instead of OpenBLAS, CRC-32
# without zlib, no cJSON (log lines are read by a scan), no MPI; the probe solver is our own
# (src/probe/lbfgs.c), so probes are fitted there too (their results are written, not read back);
# warnings do not stop it (another compiler there).
# make BUNDLE=1 (scripts/gpu_bundle.sh): igpt and its CUDA tests built here to be carried to a
# GPU machine: any x86-64-v3 CPU (AVX2, as every H100/H200 host has), glibc 2.34 and gcc 11's
# libstdc++ or later; the plain products as in GPU_ONLY (OpenBLAS alone is 37 MB);
# zlib and the CUDA runtime linked in, cJSON and libgomp beside them (rpath $ORIGIN/lib); no MPI,
# no NCCL (one GPU). cuBLASLt is the GPU machine's (its CUDA folder or PyTorch's nvidia/*/lib).
ifeq ($(GPU_ONLY),1)
BUILD = build/gpu-only
WERROR =
MPICC =
DEP_DEFS = -DIGPT_NO_BLAS -DIGPT_NO_ZLIB -DIGPT_NO_CJSON
DEP_LIBS =
CUDART = -lcudart_static -ldl -lrt -lpthread
endif
ifeq ($(BUNDLE),1)
BUILD = build/bundle-obj
CFLAGS = -O3 -march=x86-64-v3 -mtune=generic -fno-math-errno
MPICC =
NCCL_HOME = /nonexistent
DEP_DEFS = -DIGPT_NO_BLAS
DEP_LIBS = -Wl,-Bstatic -lz -Wl,-Bdynamic -lcjson
CUDART = -lcudart_static -ldl -lrt -lpthread
LDFLAGS += -Wl,-rpath,'$$ORIGIN/lib'
endif

# --- make SANITIZE=address,undefined (test): everything under the sanitizers ------------------
# build/sanitize: ./igpt (build/sanitize/igpt), the C tests and the interpret-mode ./igpt and CUDA
# tests, all built by clang with AddressSanitizer + UBSan (any undefined behaviour ends the
# program), so that `make SANITIZE=address,undefined test` runs the whole suite under them. One
# compiler for all: gcc's and clang's sanitizer runtimes do not mix in one program, and the
# interpret mode's fibers reuse the checker build's ASan annotations and per-block shared memory
# (IGPT_INTERP_ASAN, -femulated-tls: clang only). OpenMP is clang's libomp (clang ignores the
# pragmas with -fopenmp=libgomp), which also serves OpenBLAS's libgomp calls. No nvcc here.
ifneq ($(SANITIZE),)
BUILD = build/sanitize
CC = clang
CXX = clang++
NVCC =
CHECK_CXX = /nonexistent
SANITIZE_FLAGS = -fsanitize=$(SANITIZE) -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g
# -Wno-pass-failed: clang says which `omp simd` loops the instrumented code cannot vectorize.
CFLAGS = -O1 -march=native -fno-math-errno $(SANITIZE_FLAGS) -Wno-pass-failed
LDFLAGS += $(SANITIZE_FLAGS)
ifneq ($(findstring address,$(SANITIZE)),)
INTERP_SANITIZE = $(SANITIZE_FLAGS) -DIGPT_INTERP_ASAN
# Array bounds in the kernels are ASan's (per-block shared arrays with redzones, reported with the
# kernel, block and thread: the checker's planted bugs); UBSan's bounds check would stop first.
INTERP_KERNEL_FLAGS = -femulated-tls -fno-sanitize=bounds
else
INTERP_SANITIZE = $(SANITIZE_FLAGS)
endif
endif

CFLAGS ?= -O3 -march=native -fno-math-errno
WERROR ?= -Werror
DEP_LIBS ?= -lopenblas -lcjson -lz
# OpenBLAS, OpenMP build: inside our own parallel regions its calls run single-threaded.
MULTIARCH := $(shell $(CC) -print-multiarch)
BLAS_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-openmp
# Image decoders (src/data/decode.c): JPEG by libjpeg-turbo, PNG by libpng, both fuzzed by
# OSS-Fuzz and patched by Debian. GPU_ONLY has neither: stb_image reads PNG there and JPEG is
# refused with a message. BUNDLE links them in statically (zlib follows in DEP_LIBS), or leaves
# them out as GPU_ONLY does where Debian's .a files are missing.
IMAGE_STATIC = $(wildcard /usr/lib/$(MULTIARCH)/libjpeg.a /usr/lib/$(MULTIARCH)/libpng16.a)
ifeq ($(GPU_ONLY),1)
IMAGE_DEFS = -DIGPT_NO_JPEG -DIGPT_NO_PNG
else ifneq ($(BUNDLE),1)
IMAGE_LIBS = -lpng16 -ljpeg
else ifeq ($(words $(IMAGE_STATIC)),2)
IMAGE_LIBS = -Wl,-Bstatic -lpng16 -ljpeg -Wl,-Bdynamic
else
IMAGE_DEFS = -DIGPT_NO_JPEG -DIGPT_NO_PNG
endif
# MPI (OpenMPI) for multi-process training, when its compiler wrapper is found.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
ifneq ($(MPICC),)
MPI_CFLAGS := -DIGPT_MPI $(patsubst -I%,-isystem %,$(shell $(MPICC) --showme:compile))
MPI_LIBS := $(shell $(MPICC) --showme:link)
endif
CFLAGS += $(MPI_CFLAGS)
# -Wno-missing-field-initializers: table rows (option tables, tensor lists)
# leave trailing fields out on purpose; they are zero.
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wshadow $(WERROR) \
          -Wno-missing-field-initializers -fopenmp -Isrc -Ithird_party -isystem $(BLAS_INC) $(DEP_DEFS) $(IMAGE_DEFS) -MMD -MP
LDLIBS = $(LDFLAGS) -fopenmp -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) $(IMAGE_LIBS) $(DEP_LIBS) -lm $(MPI_LIBS)

BUILD ?= build
# ./igpt, or $(BUILD)/igpt in the builds for a GPU machine (they never replace ./igpt).
IGPT = $(if $(filter build,$(BUILD)),igpt,$(BUILD)/igpt)
# The library: every stage of src/ (data, model, train, parallel, probe, cli)
# and the benchmark command, without the entry point and the GPU stand-in.
LIB_SRC = $(filter-out src/cli/main.c src/model/gpu_stub.c src/data/stb_impl.c,$(wildcard src/*/*.c)) $(wildcard bench/*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/src/data/stb_impl.o
MAIN_OBJ = $(BUILD)/src/cli/main.o
TEST_SRC = $(wildcard tests/*.c)
TEST_OBJ = $(TEST_SRC:%.c=$(BUILD)/%.o)
# The test runner (tests/harness.c), in C; the CUDA tests link it too.
HARNESS_OBJ = $(BUILD)/tests/harness.o
CUDA_SRC = $(wildcard cuda/*.cu) bench/gpu_bench.cu
CUDA_TEST_SRC = $(wildcard tests/cuda/*.cu)


# --- The CUDA backend of ./igpt -------------------------------------------------------
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
comma := ,
ifneq ($(NVCC),)
CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
CUDA_LIB ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib) $(CUDA_HOME)/lib64)
# Machine code for A100 (sm_80) and H100/H200 (sm_90), and sm_90's PTX, which the driver of a
# newer GPU compiles when it loads the program (cuobjdump --list-elf / --list-ptx show them).
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90
# Where a GPU machine keeps cuBLASLt/NCCL/cudart and their headers outside the CUDA folder
# (pip's nvidia/*/lib and nvidia/*/include; scripts/gpu_check.sh finds them).
GPU_LIB_DIRS ?=
GPU_INC_DIRS ?=
CUBLASLT ?= -lcublasLt
CUDART ?= -lcudart
NVCC_FLAGS = -std=c++17 -O3 $(CUDA_ARCH) $(if $(WERROR),-Werror all-warnings) \
             -Xcompiler -Wall,-Wextra$(if $(WERROR),$(comma)-Werror),-fopenmp \
             -Isrc -Icuda -Itests/cuda -isystem $(BLAS_INC) $(addprefix -isystem ,$(GPU_INC_DIRS)) $(DEP_DEFS) -MMD -MP
GPU_OBJ = $(CUDA_SRC:%.cu=$(BUILD)/nvcc/%.o)
# NCCL: in the CUDA folder, or NCCL_HOME (e.g. pip's nvidia/nccl); without it
# the build has no multi-GPU path (--device cuda under mpirun says so).
NCCL_HOME ?= $(CUDA_HOME)
ifneq ($(wildcard $(NCCL_HOME)/include/nccl.h),)
NCCL_FLAGS = -isystem $(NCCL_HOME)/include
NCCL_LIBS = -L$(NCCL_HOME)/lib -L$(NCCL_HOME)/lib64 -Wl,-rpath,$(NCCL_HOME)/lib -Wl,-rpath,$(NCCL_HOME)/lib64 \
            -l:libnccl.so.2
else
NCCL_FLAGS = -DIGPT_NO_NCCL
NCCL_LIBS =
endif
NVCC_FLAGS += $(NCCL_FLAGS)
GPU_LIBS = -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) $(foreach d,$(GPU_LIB_DIRS),-L$(d) -Wl,-rpath,$(d)) $(CUBLASLT) \
           $(NCCL_LIBS) $(CUDART)
GPU_TEST_OBJ = $(CUDA_TEST_SRC:%.cu=$(BUILD)/nvcc/%.o)
else
GPU_OBJ = $(BUILD)/src/model/gpu_stub.o
GPU_LIBS =
endif

.PHONY: all test bench-data bench-cpu bench-probe clean
all: $(IGPT)
ifneq ($(NVCC),)
all: $(BUILD)/cuda/igpt_cuda_tests
endif

# GPU objects before the library: the library's backend.c calls into them.
$(IGPT): $(MAIN_OBJ) $(GPU_OBJ) $(BUILD)/libigpt.a
	$(CXX) -o $@ $^ $(LDLIBS) $(GPU_LIBS)

$(BUILD)/libigpt.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Vendored stb: compiled once, without our warning flags. Under SANITIZE, its
# signed left shifts (JPEG bit packing, 2.27) are not checked: ASan and the rest still are.
$(BUILD)/src/data/stb_impl.o: src/data/stb_impl.c
	@mkdir -p $(dir $@)
	$(CC) $(filter -O% -m%,$(CFLAGS)) $(SANITIZE_FLAGS) $(if $(SANITIZE),-fno-sanitize=shift) -std=c11 -D_DEFAULT_SOURCE -Ithird_party -w -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/igpt_tests: $(TEST_OBJ) $(GPU_OBJ) $(BUILD)/libigpt.a
	$(CXX) -o $@ $^ $(LDLIBS) $(GPU_LIBS)

# The commit ./igpt --version names; rewritten only when it changes.
$(BUILD)/commit.h: FORCE
	@mkdir -p $(BUILD)
	@if c=$$(git rev-parse --short=12 HEAD 2>/dev/null); then git diff --quiet HEAD -- || c="$$c-dirty"; \
	 else c=unknown; fi; \
	 echo "#define IGPT_COMMIT \"$$c\"" > $@.tmp; cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/src/util/version.o: $(BUILD)/commit.h
$(BUILD)/src/util/version.o: CFLAGS += -I$(BUILD)
.PHONY: FORCE

# --- nvcc builds -----------------------------------------------------------------------------
$(BUILD)/nvcc/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c -o $@ $<
$(BUILD)/nvcc/tests/%.o: NVCC_FLAGS += -Itests
$(BUILD)/cuda/igpt_cuda_tests: $(GPU_TEST_OBJ) $(HARNESS_OBJ) $(GPU_OBJ) $(BUILD)/libigpt.a
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $^ $(LDLIBS) $(GPU_LIBS)

# --- Interpret mode (g++) ------------------------------------------------------------------
INTERP_FLAGS = -std=c++20 -O2 -g -DIGPT_INTERPRET -Wall -Wextra -Wshadow -Werror -fopenmp -Isrc -Icuda \
               -Itests/cuda -isystem $(BLAS_INC) $(INTERP_SANITIZE) -MMD -MP
INTERP_SRC = $(wildcard cuda/interpret/*.cpp)
INTERP_OBJ = $(CUDA_SRC:%.cu=$(BUILD)/interp/%.o) $(INTERP_SRC:%.cpp=$(BUILD)/interp/%.o)
INTERP_TEST_OBJ = $(CUDA_TEST_SRC:%.cu=$(BUILD)/interp/%.o)

$(BUILD)/interp/%.o: %.cu
	@mkdir -p $(dir $@)
	$(CXX) $(INTERP_FLAGS) $(INTERP_KERNEL_FLAGS) -x c++ -c -o $@ $<
$(BUILD)/interp/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(INTERP_FLAGS) -c -o $@ $<
$(BUILD)/interp/tests/%.o: INTERP_FLAGS += -Itests
# -rdynamic: the launch limits find each kernel's sm_90 registers by its symbol (dladdr).
$(BUILD)/interp/igpt_cuda_tests: $(INTERP_TEST_OBJ) $(HARNESS_OBJ) $(INTERP_OBJ) $(BUILD)/libigpt.a
	$(CXX) -rdynamic -o $@ $^ $(LDLIBS) -lboost_context
$(BUILD)/interp/igpt: $(MAIN_OBJ) $(INTERP_OBJ) $(BUILD)/libigpt.a
	$(CXX) -rdynamic -o $@ $^ $(LDLIBS) -lboost_context

# --- Interpret mode under the sanitizers (the checker builds) ------------------------------
# The CUDA tests twice more: build/interp-asan/igpt_cuda_tests (AddressSanitizer:
# out-of-bounds accesses to cudaMalloc and shared memory) and
# build/interp-tsan/igpt_cuda_tests (ThreadSanitizer: races in shared and global
# memory); see cuda/interpret/checker.cpp. Built by clang++, for -femulated-tls
# (g++ has no such option), which on the CUDA sources gives every static
# __shared__ array of every block an allocation of its own.
# Under TSan the scheduler (cuda/interpret/*.cpp) is not instrumented: its
# bookkeeping between fibers is not the kernels' business.
CHECK_CXX ?= clang++
CHECK_FLAGS = -std=c++20 -O2 -g -fno-omit-frame-pointer -DIGPT_INTERPRET -Wall -Wextra -Wshadow -Werror -fopenmp=libgomp \
              -Isrc -Icuda -Itests/cuda -Itests -isystem $(BLAS_INC) -MMD -MP
CHECK_TEST_SRC = $(CUDA_TEST_SRC) $(CUDA_SRC) $(INTERP_SRC)
CHECK_LIBS = $(HARNESS_OBJ) $(BUILD)/libigpt.a $(subst -fopenmp,-fopenmp=libgomp,$(LDLIBS)) -lboost_context

$(BUILD)/interp-asan/%.o: %.cu
	@mkdir -p $(dir $@)
	$(CHECK_CXX) $(CHECK_FLAGS) -DIGPT_INTERP_ASAN -fsanitize=address -femulated-tls -x c++ -c -o $@ $<
$(BUILD)/interp-asan/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CHECK_CXX) $(CHECK_FLAGS) -DIGPT_INTERP_ASAN -fsanitize=address -c -o $@ $<
$(BUILD)/interp-asan/igpt_cuda_tests: $(patsubst %,$(BUILD)/interp-asan/%.o,$(basename $(CHECK_TEST_SRC))) \
                                      $(HARNESS_OBJ) $(BUILD)/libigpt.a
	$(CHECK_CXX) -fsanitize=address -rdynamic -o $@ $(filter $(BUILD)/interp-asan/%,$^) $(CHECK_LIBS)

$(BUILD)/interp-tsan/%.o: %.cu
	@mkdir -p $(dir $@)
	$(CHECK_CXX) $(CHECK_FLAGS) -DIGPT_INTERP_TSAN -fsanitize=thread -femulated-tls -x c++ -c -o $@ $<
$(BUILD)/interp-tsan/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CHECK_CXX) $(CHECK_FLAGS) -DIGPT_INTERP_TSAN -c -o $@ $<
$(BUILD)/interp-tsan/igpt_cuda_tests: $(patsubst %,$(BUILD)/interp-tsan/%.o,$(basename $(CHECK_TEST_SRC))) \
                                      $(HARNESS_OBJ) $(BUILD)/libigpt.a
	$(CHECK_CXX) -fsanitize=thread -rdynamic -o $@ $(filter $(BUILD)/interp-tsan/%,$^) $(CHECK_LIBS)

ifneq ($(shell command -v $(CHECK_CXX) 2>/dev/null),)
CHECK_BINS = $(BUILD)/interp-asan/igpt_cuda_tests $(BUILD)/interp-tsan/igpt_cuda_tests
all: $(CHECK_BINS)
endif

# --- Each kernel's registers in the real sm_90 build (the interpreter's launch limits) ------
# cuda/interpret/sm90_kernels.inc is committed (the interpret mode needs no nvcc);
# with nvcc, make rebuilds it in build/ and tests/cuda/run_checker.sh compares
# the two. `make sm90-kernels` rewrites the committed one.
# test_mma.cu: the tensor-core primitives' own kernels (issue 12).
SM90_SRC = $(CUDA_SRC) tests/cuda/test_checker.cu tests/cuda/test_mma.cu
.PHONY: sm90-kernels
ifneq ($(NVCC),)
SM90_NVCC_FLAGS = -std=c++17 -O3 -Werror all-warnings -Isrc -Icuda -Itests/cuda -Itests -isystem $(BLAS_INC) $(NCCL_FLAGS)
$(BUILD)/sm90/%.rows: %.cu cuda/interpret/sm90_kernels.sh
	@mkdir -p $(dir $@)
	bash cuda/interpret/sm90_kernels.sh $@ $< $(NVCC) $(SM90_NVCC_FLAGS)
$(BUILD)/sm90_kernels.inc: $(SM90_SRC:%.cu=$(BUILD)/sm90/%.rows)
	bash cuda/interpret/sm90_kernels.sh --combine $@ $^
all: $(BUILD)/sm90_kernels.inc
sm90-kernels: $(BUILD)/sm90_kernels.inc
	cp $< cuda/interpret/sm90_kernels.inc
else
sm90-kernels:
	@echo "sm90-kernels: needs nvcc (the real sm_90 build)"; exit 1
endif

# --- Tests and benchmarks ----------------------------------------------------------------------
test: $(IGPT) $(BUILD)/igpt_tests $(BUILD)/interp/igpt_cuda_tests $(BUILD)/interp/igpt $(CHECK_BINS)
	@IGPT_BUILD=$(BUILD) bash tests/run.sh

bench-data: igpt
	@bash bench/bench_data.sh

bench-cpu: igpt
	@bash bench/bench_cpu.sh

bench-probe: igpt
	@bash bench/bench_probe.sh

clean:
	rm -rf $(BUILD) $(IGPT)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- Fuzzing (issue 13; docs/fuzzing.md) ------------------------------------------------------
# make fuzz: libFuzzer harnesses (fuzz/fuzz_<reader>.c) under ASan and UBSan in build/fuzz/,
# one per file reader, and for the formats with CRCs a _crc variant whose mutator rewrites
# them. The library is compiled again by clang for them (build/fuzz/obj/), never into ./igpt.
# make test runs each for a few seconds (fuzz/short_run.sh) where clang has libFuzzer.
FUZZ_CC ?= clang
FUZZ_READERS = dataset palette checkpoint features cifar10 images igpz safetensors
FUZZ_CRC_READERS = dataset palette checkpoint features igpz
FUZZ_BINS = $(FUZZ_READERS:%=build/fuzz/fuzz_%) $(FUZZ_CRC_READERS:%=build/fuzz/fuzz_%_crc)
FUZZ_FLAGS = -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -O1 -g -fno-omit-frame-pointer \
             -fsanitize=address,undefined -fno-sanitize-recover=all -fsanitize=fuzzer-no-link -fopenmp=libgomp \
             -Wall -Wextra -Wno-missing-field-initializers -Wno-unused-parameter -Isrc -Ithird_party -Ifuzz -isystem $(BLAS_INC) $(DEP_DEFS) $(IMAGE_DEFS) -MMD -MP
# What a reader holds when die() ends it is recorded and released (fuzz/fuzz_common.h).
FUZZ_WRAP = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=fopen,--wrap=fclose
FUZZ_LIBS = -fopenmp=libgomp -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) $(IMAGE_LIBS) $(DEP_LIBS) -lm
FUZZ_LIB_OBJ = $(patsubst %.c,build/fuzz/obj/%.o,$(filter-out src/cli/main.c,$(wildcard src/*/*.c)))
.PHONY: fuzz fuzz-seeds
# The harnesses' objects are intermediate to make; kept, so that make test does not rebuild them.
.SECONDARY: $(FUZZ_BINS:build/fuzz/%=build/fuzz/obj/fuzz/%.o) build/fuzz/obj/fuzz/fuzz_common.o
fuzz: $(FUZZ_BINS) build/fuzz/image_seeds

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -c -o $@ $<
build/fuzz/obj/src/data/stb_impl.o: FUZZ_FLAGS += -w
build/fuzz/obj/src/util/version.o: $(BUILD)/commit.h
build/fuzz/obj/src/util/version.o: FUZZ_FLAGS += -I$(BUILD)
build/fuzz/libigpt_fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/obj/fuzz/%_crc.o: fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DFUZZ_FIX_CRC -c -o $@ $<
build/fuzz/fuzz_%: build/fuzz/obj/fuzz/fuzz_%.o build/fuzz/obj/fuzz/fuzz_common.o build/fuzz/libigpt_fuzz.a
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $(FUZZ_WRAP) -o $@ $^ $(FUZZ_LIBS)
# Writes the image seeds (PNG, JPEG, BMP, TGA, PPM, PGM) with the vendored stb writer.
# stb is compiled in here, plain: the build's own stb object may be a sanitized one (SANITIZE).
build/fuzz/image_seeds: fuzz/image_seeds.c src/data/stb_impl.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -std=c11 -D_DEFAULT_SOURCE -Ithird_party -w -o $@ $^ -lm
# Seeds from files igpt writes (fuzz/make_seeds.sh): build/fuzz/seeds/<reader>/.
fuzz-seeds: igpt build/fuzz/image_seeds
	bash fuzz/make_seeds.sh
# Not under SANITIZE: the harnesses are sanitized builds already, and make test runs them.
ifneq ($(shell command -v $(FUZZ_CC) 2>/dev/null),)
ifeq ($(SANITIZE),)
test: fuzz
endif
endif
