// The option tables of cli.h turned into getopt_long calls, values and help.
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu_ops.h"
#include "util/gemm_bf16.h"
#include "util/version.h"

void usage_error(const char *command, const char *fmt, ...) {
    fputs("igpt: error: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see ./igpt %s --help)\n", command);
    exit(EXIT_USAGE);
}

// --- Values ---------------------------------------------------------------------------

static long long parse_integer(const char *command, const char *option, const char *text, long long lo, long long hi) {
    char *end = NULL;
    errno = 0;
    const long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0') usage_error(command, "%s expects an integer, got '%s'", option, text);
    if (v < lo || v > hi) usage_error(command, "%s must be between %lld and %lld, got %lld", option, lo, hi, v);
    return v;
}

static double parse_real(const char *command, const char *option, const char *text, double min, double max) {
    char *end = NULL;
    errno = 0;
    const double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || isnan(v))
        usage_error(command, "%s expects a number, got '%s'", option, text);
    if (v < min || v > max) usage_error(command, "%s must be between %g and %g, got %g", option, min, max, v);
    return v;
}

// "auto|cpu|cuda" -> is `text` one of them?
static bool is_choice(const char *choices, const char *text) {
    const size_t n = strlen(text);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        const size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, text, n) == 0) return true;
        c += len + (bar ? 1 : 0);
    }
    return false;
}

// "auto|cpu|cuda" -> "auto, cpu or cuda".
static char *choices_text(const char *choices) {
    char *text = xmalloc(strlen(choices) * 2 + 8);
    size_t len = 0;
    const char *last_bar = strrchr(choices, '|');
    for (const char *c = choices; *c; c++) {
        if (*c != '|') {
            text[len++] = *c;
            continue;
        }
        const char *sep = c == last_bar ? " or " : ", ";
        memcpy(text + len, sep, strlen(sep));
        len += strlen(sep);
    }
    text[len] = '\0';
    return text;
}

static void set_value(const char *command, const Option *o, const char *text, char *field) {
    char option[80];
    snprintf(option, sizeof option, "--%s", o->name);
    switch (o->kind) {
    case OPT_FLAG: *(bool *)field = true; break;
    case OPT_INT: *(int *)field = (int)parse_integer(command, option, text, o->lo, o->hi); break;
    case OPT_INT64: *(int64_t *)field = parse_integer(command, option, text, o->lo, o->hi); break;
    case OPT_UINT64: *(uint64_t *)field = (uint64_t)parse_integer(command, option, text, o->lo, o->hi); break;
    case OPT_REAL: *(double *)field = parse_real(command, option, text, o->min, o->max); break;
    case OPT_TEXT: *(const char **)field = text; break;
    case OPT_CHOICE:
        if (!is_choice(o->choices, text)) {
            char *allowed = choices_text(o->choices);
            usage_error(command, "%s must be %s, got '%s'", option, allowed, text);
        }
        *(const char **)field = text;
        break;
    case OPT_REALS: {
        RealList *list = (RealList *)field;
        list->count = 0;
        char *copy = xstrdup(text), *save = NULL;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            if (list->count == IGPT_MAX_REALS)
                usage_error(command, "%s takes at most %d values", option, IGPT_MAX_REALS);
            list->values[list->count++] = parse_real(command, option, item, o->min, o->max);
        }
        free(copy);
        if (list->count == 0) usage_error(command, "%s needs at least one value", option);
        break;
    }
    }
}

// --- Tables ---------------------------------------------------------------------------

static int count_options(const Command *cmd) {
    int n = 0;
    for (int g = 0; g < cmd->num_groups; g++) n += cmd->groups[g].count;
    return n;
}

// The k-th option of the command (groups in order), and where its field sits.
static const Option *option_at(const Command *cmd, int k, size_t *offset) {
    *offset = 0;
    for (int g = 0; g < cmd->num_groups; g++) {
        const OptionGroup *group = &cmd->groups[g];
        if (k < group->count) {
            *offset = group->base + group->options[k].offset;
            return &group->options[k];
        }
        k -= group->count;
    }
    die("internal: '%s' has no option %d", cmd->name, k);
}

// A table mistake is the programmer's: caught on the first run of the command.
static void check_table(const Command *cmd) {
    for (int k = 0; k < count_options(cmd); k++) {
        size_t offset;
        const Option *o = option_at(cmd, k, &offset);
        const bool integer = o->kind == OPT_INT || o->kind == OPT_INT64 || o->kind == OPT_UINT64;
        const bool real = o->kind == OPT_REAL || o->kind == OPT_REALS;
        if ((integer && o->lo >= o->hi) || (real && !(o->min < o->max)) || (o->kind == OPT_CHOICE && !o->choices) ||
            (o->kind != OPT_FLAG && !o->value) || !o->help)
            die("internal: option --%s of '%s' is not fully described", o->name, cmd->name);
    }
}

// --- Help -----------------------------------------------------------------------------

enum { HELP_COLUMN = 24 };

// "  --name VALUE" padded to the help column, then the help's lines.
static void print_option(FILE *out, const char *names, const char *help, const char *fallback) {
    int width = fprintf(out, "  %s", names);
    if (width >= HELP_COLUMN - 1) {
        fputc('\n', out);
        width = 0;
    }
    for (const char *line = help; line;) {
        const char *newline = strchr(line, '\n');
        const int len = newline ? (int)(newline - line) : (int)strlen(line);
        fprintf(out, "%*s%.*s", HELP_COLUMN - width, "", len, line);
        width = 0;
        line = newline ? newline + 1 : NULL;
        if (line) fputc('\n', out);
    }
    if (fallback) fprintf(out, " (default %s)", fallback);
    fputc('\n', out);
}

void cli_print_help(const Command *cmd, FILE *out) {
    fprintf(out, "usage: ./igpt %s %s\n", cmd->name, cmd->usage);
    if (cmd->about) fprintf(out, "\n%s", cmd->about);
    for (int g = 0; g < cmd->num_groups; g++) {
        const OptionGroup *group = &cmd->groups[g];
        if (g == 0 || group->title) fputc('\n', out);
        if (group->title) fprintf(out, "%s:\n", group->title);
        for (int i = 0; i < group->count; i++) {
            const Option *o = &group->options[i];
            char names[96];
            snprintf(names, sizeof names, "--%s%s%s", o->name, o->value ? " " : "", o->value ? o->value : "");
            print_option(out, names, o->help, o->fallback);
        }
    }
    if (cmd->num_groups == 0) fputc('\n', out);  // a command without options of its own
    print_option(out, "-h, --help", "this text", NULL);
    print_option(out, "--version", "the version of igpt", NULL);
    if (cmd->epilogue) fprintf(out, "\n%s", cmd->epilogue);
}

// --- Parsing --------------------------------------------------------------------------

enum { OPTION_ID_BASE = 1000, HELP_ID = 'h', VERSION_ID = 999 };

void cli_parse(const Command *cmd, int argc, char **argv, void *settings, ParsedArgs *out) {
    check_table(cmd);
    const int n = count_options(cmd);
    *out = (ParsedArgs){.command = cmd, .settings = settings, .given = xcalloc((size_t)n + 1, sizeof(bool))};
    // Defaults first, through the same parser as the command line.
    for (int k = 0; k < n; k++) {
        size_t offset;
        const Option *o = option_at(cmd, k, &offset);
        if (o->fallback) set_value(cmd->name, o, o->fallback, (char *)settings + offset);
    }
    struct option *long_options = xcalloc((size_t)n + 3, sizeof *long_options);
    for (int k = 0; k < n; k++) {
        size_t offset;
        const Option *o = option_at(cmd, k, &offset);
        long_options[k] =
            (struct option){o->name, o->kind == OPT_FLAG ? no_argument : required_argument, NULL, OPTION_ID_BASE + k};
    }
    long_options[n] = (struct option){"help", no_argument, NULL, HELP_ID};
    long_options[n + 1] = (struct option){"version", no_argument, NULL, VERSION_ID};
    opterr = 0;
    optind = 0;  // a fresh scan (glibc), whatever parsed before
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        if (c == HELP_ID) {
            cli_print_help(cmd, stdout);
            exit(0);
        }
        if (c == VERSION_ID) {
            printf("%s\n", igpt_version());
            exit(0);
        }
        if (c == ':') usage_error(cmd->name, "option %s needs a value", argv[optind - 1]);
        if (c < OPTION_ID_BASE || c >= OPTION_ID_BASE + n)
            usage_error(cmd->name, "unknown option %s for '%s'", argv[optind - 1], cmd->name);
        size_t offset;
        const Option *o = option_at(cmd, c - OPTION_ID_BASE, &offset);
        set_value(cmd->name, o, optarg, (char *)settings + offset);
        out->given[c - OPTION_ID_BASE] = true;
    }
    free(long_options);
    out->operands = argv + optind;
    out->num_operands = argc - optind;
    if (cmd->max_operands >= 0 && out->num_operands > cmd->max_operands)
        usage_error(cmd->name, "unexpected argument '%s'", argv[optind + cmd->max_operands]);
    if (out->num_operands < cmd->min_operands) usage_error(cmd->name, "expected %s", cmd->operands_expected);
}

void parsed_args_free(ParsedArgs *p) {
    free(p->given);
    memset(p, 0, sizeof *p);
}

static int option_index_of(const ParsedArgs *p, const void *field) {
    const size_t offset = (size_t)((const char *)field - (const char *)p->settings);
    for (int k = 0; k < count_options(p->command); k++) {
        size_t at;
        option_at(p->command, k, &at);
        if (at == offset) return k;
    }
    die("internal: no option of '%s' sets that field", p->command->name);
}

bool cli_given(const ParsedArgs *p, const void *field) { return p->given[option_index_of(p, field)]; }

const char *cli_option_name(const ParsedArgs *p, const void *field) {
    size_t offset;
    return option_at(p->command, option_index_of(p, field), &offset)->name;
}

// --- Device options -------------------------------------------------------------------

BackendOptions backend_options_from(const DeviceSettings *d) {
    BackendOptions opt = {.threads = cpu_set_threads(d->threads)};
    opt.device = backend_choose_device(d->device);
    if (!parse_precision(d->precision, opt.device, &opt.precision)) die("internal: precision '%s'", d->precision);
    const char *why = opt.device == DEVICE_CPU && opt.precision == GPU_BF16 ? gemm_bf16_unavailable() : NULL;
    if (why) die("--precision bf16 on the CPU: %s", why);
    if (!parse_attention(d->attention, &opt.attention)) die("internal: attention '%s'", d->attention);
    return opt;
}
