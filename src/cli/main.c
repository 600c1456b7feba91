// ./igpt: one binary, one subcommand per stage of the pipeline
// (synth/prepare -> train -> probe -> plot), plus bench, show and info.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/blas.h"
#include "util/leak_check.h"
#include "util/version.h"

// Leaks are checked when a command returns (util/leak_check.h), but not under
// mpirun: OpenMPI's components, unloaded by MPI_Finalize, leave memory behind
// that has no module name left to suppress.
static int leak_checked(int status) {
    if (!getenv("OMPI_COMM_WORLD_SIZE")) leak_check_now();
    return status;
}

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Subcommand;

static const Subcommand subcommands[] = {
    {"synth", cmd_synth, "write the built-in 10-class synthetic image set (no download needed)"},
    {"prepare", cmd_prepare, "CIFAR-10 or an image folder -> k-means palette -> prepared token files"},
    {"train", cmd_train, "pretrain the next-pixel model on a prepared split (CPU or GPU, one or many processes)"},
    {"probe", cmd_probe, "linear probes on every layer's frozen features (or raw pixels)"},
    {"sample", cmd_sample, "draw images from a model: unconditional samples and completions (PNG grids)"},
    {"compress", cmd_compress, "compress prepared images losslessly with a model (range coding of its distributions)"},
    {"decompress", cmd_decompress, "give back the prepared images of a file ./igpt compress wrote, exactly"},
    {"import", cmd_import, "a Hugging Face ImageGPT model (the released iGPT-S/M/L) -> an igpt checkpoint and palette"},
    {"export", cmd_export, "an igpt checkpoint -> a Hugging Face ImageGPT folder that transformers loads"},
    {"plot", cmd_plot, "plots of runs: generative loss vs probe accuracy, accuracy vs layer, loss vs step"},
    {"bench", cmd_bench, "throughput of training, probe features, the probe solver and GPU attention"},
    {"show", cmd_show, "draw a prepared split (and its palette) as PNG images"},
    {"info", cmd_info, "check a prepared split, palette, checkpoint or compressed file and print what it holds"},
};

static void print_help(FILE *out) {
    fprintf(out,
            "igpt: image-GPT in C and CUDA: next-pixel pretraining, linear probes, samples, compression, plots\n\n"
            "usage: ./igpt <command> [options]     (./igpt <command> --help for its options)\n\ncommands:\n");
    for (int i = 0; i < COUNT_OF(subcommands); i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "  %-10s %s\n", "help", "this list");
    fprintf(out, "  %-10s %s\n", "--version", "the version of igpt and the commit it was built from");
}

int main(int argc, char **argv) {
    start_again_with_library_settings(argv);  // util/blas.c
    flush_denormals_to_zero();
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        print_help(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("%s\n", igpt_version());
        return 0;
    }
    for (int i = 0; i < COUNT_OF(subcommands); i++)
        if (!strcmp(name, subcommands[i].name)) return leak_checked(subcommands[i].run(argc - 1, argv + 1));
    // One line naming the commands, as every usage error (the list is ./igpt --help).
    char names[256] = "";
    for (int i = 0; i < COUNT_OF(subcommands); i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", subcommands[i].name);
    fprintf(stderr, "igpt: error: unknown command '%s' (commands: %s)\n(see ./igpt --help)\n", name, names);
    return EXIT_USAGE;
}
