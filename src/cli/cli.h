// Subcommands of ./igpt and the option handling they share.
#ifndef IGPT_CLI_H
#define IGPT_CLI_H

#include "util/util.h"

int cmd_prepare(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_plot(int argc, char **argv);

// Prints "igpt: error: <message>" and a pointer to `./igpt <command> --help`,
// then exits with EXIT_USAGE.
IGPT_NORETURN IGPT_PRINTF(2, 3) void usage_error(const char *command, const char *fmt, ...);
// Turns getopt_long's '?' and ':' returns into a usage_error naming the option.
IGPT_NORETURN void bad_option(const char *command, int opt_result, char **argv);

#endif
