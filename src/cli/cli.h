// The command-line layer of ./igpt. Every subcommand describes its options
// once, in a table (name, type, where the value goes, accepted range,
// default, help line); parsing, range checks, "was it given", -h/--help,
// --version and the help text all come from that table.
//
// A command's settings live in one struct of its own; each table row names
// a field of it by offset (SETTING(Struct, field)), so a table is static
// data that reads like the help text it produces.
#ifndef IGPT_CLI_H
#define IGPT_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "model/backend.h"
#include "util/util.h"

int cmd_prepare(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_sample(int argc, char **argv);
// src/cli/cmd_compress.c
int cmd_compress(int argc, char **argv);
int cmd_decompress(int argc, char **argv);
// src/cli/cmd_hf.c
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);

typedef enum {
    OPT_FLAG,    // bool; takes no value
    OPT_INT,     // int in [lo, hi]
    OPT_INT64,   // int64_t in [lo, hi]
    OPT_UINT64,  // uint64_t in [lo, hi] (lo >= 0)
    OPT_REAL,    // double in [min, max]
    OPT_REALS,   // RealList: comma-separated doubles, each in [min, max]
    OPT_TEXT,    // const char *: a path or a name, checked by the command
    OPT_CHOICE,  // const char *: one of `choices`
} OptionKind;

#define IGPT_MAX_REALS 16
typedef struct {
    double values[IGPT_MAX_REALS];
    int count;
} RealList;

typedef struct {
    const char *name;      // long name without the dashes: "batch" is --batch
    OptionKind kind;       //
    size_t offset;         // of the field it sets, in the command's settings struct
    const char *value;     // what --help shows after the name: "N", "DIR", "X"
    const char *help;      // one line (wrapped by hand with "\n" if longer)
    const char *fallback;  // the default, written as a user would type it ("16", "bf16"); it is
                           // parsed like one, and --help appends "(default X)"; NULL: zero, NULL, false
    long long lo, hi;      // integer kinds: accepted range
    double min, max;       // OPT_REAL, OPT_REALS: accepted range
    const char *choices;   // OPT_CHOICE: "auto|cpu|cuda"
} Option;

#define SETTING(Struct, field) offsetof(Struct, field)
#define COUNT_OF(array) ((int)(sizeof(array) / sizeof((array)[0])))

// Options under one heading of --help. `base` is added to every offset, so
// a group written once for a sub-struct (DeviceSettings) serves every
// command that embeds it.
typedef struct {
    const char *title;  // "model", "training", ...; NULL: no heading (the group before goes on)
    const Option *options;
    int count;
    size_t base;
} OptionGroup;

typedef struct {
    const char *name;   // "train"
    const char *usage;  // after "usage: ./igpt <name> "
    const char *about;  // paragraphs after the usage line
    const OptionGroup *groups;
    int num_groups;
    const char *epilogue;  // printed after the options (NULL: none)
    // Operands (words that are not options): how many the command takes, and
    // what the error says when there are too few ("one FILE to show").
    int min_operands, max_operands;  // max -1: no limit
    const char *operands_expected;
} Command;

// What cli_parse found besides the settings themselves.
typedef struct {
    const Command *command;
    const void *settings;
    bool *given;      // per option, groups in order: set on the command line
    char **operands;  // the operands, in order
    int num_operands;
} ParsedArgs;

// Fills `settings` with the defaults, then with the command line
// (argv[0] is the command's name). -h/--help prints the help and exits 0,
// --version prints the version and exits 0; a bad option or value ends the
// program with a usage error (exit 2) that names it.
void cli_parse(const Command *cmd, int argc, char **argv, void *settings, ParsedArgs *out);
void parsed_args_free(ParsedArgs *p);
// True when the option that sets `field` (a pointer into the parsed
// settings) was on the command line.
bool cli_given(const ParsedArgs *p, const void *field);
// The name ("lr", without the dashes) of the option that sets `field`.
const char *cli_option_name(const ParsedArgs *p, const void *field);
void cli_print_help(const Command *cmd, FILE *out);

// Prints "igpt: error: <message>" and a pointer to `./igpt <command> --help`,
// then exits with EXIT_USAGE.
IGPT_NORETURN IGPT_PRINTF(2, 3) void usage_error(const char *command, const char *fmt, ...);

// --- Options shared by the commands that run a model (train, probe, bench) ----
typedef struct {
    const char *device;     // auto, cpu, cuda
    const char *precision;  // auto, bf16, fp32 (parse_precision)
    const char *attention;  // auto, flash, portable (GPU only)
    int threads;            // CPU worker threads; 0: all cores
} DeviceSettings;
// The rows of DeviceSettings' options, written once; a command instantiates
// them with its default device and puts them in a group of its table:
//   static const Option device_options[] = DEVICE_OPTIONS("auto");
//   {"device", device_options, COUNT_OF(device_options), SETTING(TrainArgs, device)}
// clang-format off
#define DEVICE_OPTIONS(default_device)                                                                              \
    {                                                                                                               \
        {"device", OPT_CHOICE, SETTING(DeviceSettings, device), "NAME",                                             \
         "cuda (a GPU: bf16 with fp32 master weights), cpu (the fp32 reference), or auto\n"                         \
         "(cuda when a GPU is usable)", default_device, .choices = "auto|cpu|cuda"},                                \
        {"precision", OPT_CHOICE, SETTING(DeviceSettings, precision), "P",                                          \
         "bf16 (fp32 master weights) or fp32; auto: bf16 on a GPU, fp32 (the reference)\n"                         \
         "on the CPU, where bf16 rounds the matrix products' operands (train, bench,\n"                           \
         "probe; AVX512-BF16)", "auto", .choices = "auto|bf16|fp32"},                                    \
        {"attention", OPT_CHOICE, SETTING(DeviceSettings, attention), "K",                                          \
         "on the GPU: flash (tensor cores: bf16, head size 32, 64, 128), portable,\n"                               \
         "or auto (flash where it applies)", "auto", .choices = "auto|flash|portable"},                             \
        {"threads", OPT_INT, SETTING(DeviceSettings, threads), "N", "CPU worker threads (default: all cores)", NULL,  \
         .lo = 1, .hi = 4096},                                                                                      \
    }
// clang-format on
// Sets the CPU thread count and picks the device (dying with the reason when
// --device cuda has no GPU): what backend_create needs, recompute and zero off.
BackendOptions backend_options_from(const DeviceSettings *d);

#endif
