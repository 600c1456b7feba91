// ./igpt: one binary, one subcommand per job.
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"synth", cmd_synth, "write the built-in 10-class synthetic image set (no download needed)"},
    {"prepare", cmd_prepare, "CIFAR-10 or an image folder -> k-means palette -> prepared token files"},
    {"train", cmd_train, "pretrain the next-pixel model on a prepared split (CPU reference)"},
    {"probe", cmd_probe, "linear probes on every layer's frozen features (or raw pixels)"},
    {"plot", cmd_plot, "plots of runs: generative loss vs probe accuracy, accuracy vs layer, loss vs step"},
    {"bench", cmd_bench, "forward+backward tokens/s of the CPU reference on random tokens"},
    {"show", cmd_show, "draw a prepared split (and its palette) as PNG images"},
    {"info", cmd_info, "check a prepared split, palette or checkpoint and print what it holds"},
};
static const int num_commands = sizeof commands / sizeof commands[0];

static void print_help(FILE *out) {
    fprintf(out,
            "igpt: image-GPT in C and CUDA: next-pixel pretraining, linear probes, plots\n\n"
            "usage: ./igpt <command> [options]     (./igpt <command> --help for its options)\n\ncommands:\n");
    for (int i = 0; i < num_commands; i++) fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-9s %s\n", "help", "this list");
}

void usage_error(const char *command, const char *fmt, ...) {
    fputs("igpt: error: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see ./igpt %s --help)\n", command);
    exit(EXIT_USAGE);
}

void bad_option(const char *command, int opt_result, char **argv) {
    const char *arg = argv[optind - 1];
    if (opt_result == ':') usage_error(command, "option %s needs a value", arg);
    usage_error(command, "unknown option %s for '%s'", arg, command);
}

int main(int argc, char **argv) {
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
    for (int i = 0; i < num_commands; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "igpt: error: unknown command '%s'\n\n", name);
    print_help(stderr);
    return EXIT_USAGE;
}
