// The version of igpt and the commit it was built from (make writes
// build/commit.h), for --version and run.json.
#include "util/version.h"

#include <stdio.h>

#include "commit.h"

#define IGPT_VERSION_NUMBER "0.1.0"

const char *igpt_commit(void) { return IGPT_COMMIT; }

const char *igpt_version(void) {
    static char text[96];
    if (!text[0]) snprintf(text, sizeof text, "igpt %s (commit %s)", IGPT_VERSION_NUMBER, IGPT_COMMIT);
    return text;
}
