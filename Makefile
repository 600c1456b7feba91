# igpt: `make` builds ./igpt, `make test` runs every test, `make bench-data`
# times the data pipeline on the shared CIFAR-10 images, `make bench-cpu` the
# CPU model against PyTorch, `make bench-probe` the linear probes.
CC ?= gcc
CFLAGS ?= -O3 -march=native -fno-math-errno
# OpenBLAS, OpenMP build: inside our own parallel regions its calls run single-threaded.
MULTIARCH := $(shell $(CC) -print-multiarch)
BLAS_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp
BLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-openmp
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wshadow -Werror -fopenmp \
          -Iinclude -Ithird_party -isystem $(BLAS_INC) -MMD -MP
LDLIBS = -fopenmp -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -llbfgs -lz -lm

BUILD = build
LIB_SRC = src/util.c src/images.c src/palette.c src/dataset.c src/preview.c src/cpu_ops.c src/model.c src/optim.c src/checkpoint.c src/probe.c src/probe_features.c \
          src/cmd_prepare.c src/cmd_show.c src/cmd_train.c src/cmd_bench.c src/cmd_synthetic.c src/synthetic.c src/cmd_probe.c src/cmd_plot.c
LIB_OBJ = $(LIB_SRC:src/%.c=$(BUILD)/%.o) $(BUILD)/stb_impl.o
TEST_SRC = $(wildcard tests/*.c)
TEST_OBJ = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%.o)

.PHONY: all test bench-data bench-cpu bench-probe clean
all: igpt

igpt: $(BUILD)/main.o $(BUILD)/libigpt.a
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/libigpt.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

# Vendored stb: compiled once, without our warning flags.
$(BUILD)/stb_impl.o: src/stb_impl.c | $(BUILD)
	$(CC) -O3 -march=native -std=c11 -D_DEFAULT_SOURCE -Ithird_party -w -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c | $(BUILD)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests -c -o $@ $<

$(BUILD)/igpt_tests: $(TEST_OBJ) $(BUILD)/libigpt.a
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD):
	@mkdir -p $(BUILD)

test: igpt $(BUILD)/igpt_tests
	@bash tests/run.sh

bench-data: igpt
	@bash scripts/bench_data.sh

bench-cpu: igpt
	@bash scripts/bench_cpu.sh

bench-probe: igpt
	@bash scripts/bench_probe.sh

clean:
	rm -rf $(BUILD) igpt

-include $(wildcard $(BUILD)/*.d $(BUILD)/tests/*.d)
