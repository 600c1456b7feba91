// JSON as igpt writes and reads it. One writer serves run.json, log.jsonl,
// prepare.json, the probe results and the benchmark lines, so every string
// is escaped and a non-finite number becomes null, in one place. Objects and
// arrays are laid out either as blocks (one member per line, indented by
// two spaces a level) or inline ({"a": 1, "b": 2}), so the files stay easy
// to read and to grep. Files are read back with cJSON (Debian's libcjson);
// a GPU-only build (IGPT_NO_CJSON: the GPU machine has no cJSON) reads back
// only the numbers of log lines, by json_scan_number.
#ifndef IGPT_JSON_H
#define IGPT_JSON_H

#ifndef IGPT_NO_CJSON
#include <cjson/cJSON.h>
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 8

typedef enum { JSON_INLINE, JSON_BLOCK } JsonLayout;

typedef struct {
    char *text;
    size_t len, cap;
    int depth;                       // open objects and arrays
    bool in_object[JSON_MAX_DEPTH];  // object (members have keys) or array
    bool block[JSON_MAX_DEPTH];      // JSON_BLOCK layout
    bool empty[JSON_MAX_DEPTH];      // no member yet
} JsonWriter;

void json_init(JsonWriter *w);
// `key` names the member inside an object, and is NULL inside an array and
// for the outermost value.
void json_object_begin(JsonWriter *w, const char *key, JsonLayout layout);
void json_object_end(JsonWriter *w);
void json_array_begin(JsonWriter *w, const char *key, JsonLayout layout);
void json_array_end(JsonWriter *w);
void json_string(JsonWriter *w, const char *key, const char *value);  // NULL: null
void json_int(JsonWriter *w, const char *key, long long value);
void json_uint(JsonWriter *w, const char *key, unsigned long long value);
// `format` is one printf conversion of a double ("%.6f", "%g"); NaN and
// infinities are written as null.
void json_real(JsonWriter *w, const char *key, const char *format, double value);
void json_bool(JsonWriter *w, const char *key, bool value);

// The finished text, ending with a newline (allocated: free it); the writer
// is empty again.
char *json_finish(JsonWriter *w, size_t *len);
// The finished text written atomically to `path`.
void json_write_file(JsonWriter *w, const char *path);
// The finished text appended to an open file (a line of a .jsonl log).
void json_write_line(JsonWriter *w, FILE *f);

#ifndef IGPT_NO_CJSON
// A JSON file parsed, or NULL when it is missing or not valid JSON (free
// with cJSON_Delete).
cJSON *json_read_file(const char *path);
// The number `key` of an object; NaN when absent, null or not a number.
double json_number(const cJSON *object, const char *key);
#endif

// The number `key` of one line of JSON (len bytes, an object); NaN when
// absent, null or not a number. With cJSON the line is parsed; without it,
// json_scan_number reads it.
double json_line_number(const char *line, size_t len, const char *key);
// The number after the first `"key":` in the line: right for the top-level
// keys of the lines igpt writes (a key appears once, never inside a string
// value), not for JSON in general.
double json_scan_number(const char *line, size_t len, const char *key);

#endif
