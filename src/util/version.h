// The version of igpt and the commit it was built from, for --version and
// run.json.
#ifndef IGPT_VERSION_H
#define IGPT_VERSION_H

// "igpt 0.1.0 (commit 0123456789ab)".
const char *igpt_version(void);
// The commit alone ("0123456789ab", with "-dirty" for uncommitted changes; "unknown" outside git).
const char *igpt_commit(void);

#endif
