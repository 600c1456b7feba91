// The JSON writer (json.h): text grows in one buffer; each value is preceded
// by what its container's layout needs (a comma, a newline and indentation,
// or a space), so the caller only says what to write.
#include "util/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

void json_init(JsonWriter *w) { memset(w, 0, sizeof *w); }

static void append(JsonWriter *w, const char *bytes, size_t n) {
    if (w->len + n + 1 > w->cap) {
        w->cap = (w->len + n + 1) * 2 + 256;
        w->text = xrealloc(w->text, w->cap);
    }
    memcpy(w->text + w->len, bytes, n);
    w->len += n;
    w->text[w->len] = '\0';
}

IGPT_PRINTF(2, 3) static void appendf(JsonWriter *w, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) die("internal: JSON formatting failed");
    if ((size_t)n < sizeof small) {
        append(w, small, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    append(w, big, (size_t)n);
    free(big);
}

static void newline_and_indent(JsonWriter *w, int depth) {
    append(w, "\n", 1);
    for (int i = 0; i < depth; i++) append(w, "  ", 2);
}

static void append_escaped(JsonWriter *w, const char *s) {
    append(w, "\"", 1);
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') appendf(w, "\\%c", ch);
        else if (ch < 0x20) appendf(w, "\\u%04x", ch);
        else append(w, s, 1);
    }
    append(w, "\"", 1);
}

// Separator, indentation and key before a value.
static void begin_member(JsonWriter *w, const char *key) {
    if (w->depth == 0) {
        if (key || w->len) die("internal: a JSON text holds one value, without a key");
        return;
    }
    const int d = w->depth - 1;
    if (w->in_object[d] != (key != NULL)) die("internal: JSON object members have keys, array elements none");
    if (!w->empty[d]) append(w, ",", 1);
    if (w->block[d]) newline_and_indent(w, w->depth);
    else if (!w->empty[d]) append(w, " ", 1);
    w->empty[d] = false;
    if (key) {
        append_escaped(w, key);
        append(w, ": ", 2);
    }
}

static void open_container(JsonWriter *w, const char *key, JsonLayout layout, bool object) {
    begin_member(w, key);
    if (w->depth == JSON_MAX_DEPTH) die("internal: JSON nested too deeply");
    w->in_object[w->depth] = object;
    w->block[w->depth] = layout == JSON_BLOCK;
    w->empty[w->depth] = true;
    w->depth++;
    append(w, object ? "{" : "[", 1);
}

static void close_container(JsonWriter *w, bool object) {
    if (w->depth == 0 || w->in_object[w->depth - 1] != object) die("internal: unbalanced JSON");
    w->depth--;
    if (w->block[w->depth]) newline_and_indent(w, w->depth);
    append(w, object ? "}" : "]", 1);
}

void json_object_begin(JsonWriter *w, const char *key, JsonLayout layout) { open_container(w, key, layout, true); }
void json_object_end(JsonWriter *w) { close_container(w, true); }
void json_array_begin(JsonWriter *w, const char *key, JsonLayout layout) { open_container(w, key, layout, false); }
void json_array_end(JsonWriter *w) { close_container(w, false); }

void json_string(JsonWriter *w, const char *key, const char *value) {
    begin_member(w, key);
    if (value) append_escaped(w, value);
    else append(w, "null", 4);
}

void json_int(JsonWriter *w, const char *key, long long value) {
    begin_member(w, key);
    appendf(w, "%lld", value);
}

void json_uint(JsonWriter *w, const char *key, unsigned long long value) {
    begin_member(w, key);
    appendf(w, "%llu", value);
}

void json_real(JsonWriter *w, const char *key, const char *format, double value) {
    begin_member(w, key);
    if (!isfinite(value)) {
        append(w, "null", 4);
        return;
    }
    appendf(w, format, value);
}

void json_bool(JsonWriter *w, const char *key, bool value) {
    begin_member(w, key);
    append(w, value ? "true" : "false", value ? 4 : 5);
}

char *json_finish(JsonWriter *w, size_t *len) {
    if (w->depth != 0 || w->len == 0) die("internal: JSON text not finished");
    append(w, "\n", 1);
    char *text = w->text;
    if (len) *len = w->len;
    json_init(w);
    return text;
}

void json_write_file(JsonWriter *w, const char *path) {
    size_t len;
    char *text = json_finish(w, &len);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, text, len);
    atomic_commit(&af);
    free(text);
}

void json_write_line(JsonWriter *w, FILE *f) {
    size_t len;
    char *text = json_finish(w, &len);
    fwrite(text, 1, len, f);
    free(text);
}

#ifndef IGPT_NO_CJSON
cJSON *json_read_file(const char *path) {
    char *text = (char *)read_whole_file(path, NULL);
    if (!text) return NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    return root;
}

double json_number(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

double json_line_number(const char *line, size_t len, const char *key) {
    cJSON *entry = cJSON_ParseWithLength(line, len);
    const double value = entry ? json_number(entry, key) : NAN;
    cJSON_Delete(entry);
    return value;
}
#else
double json_line_number(const char *line, size_t len, const char *key) { return json_scan_number(line, len, key); }
#endif

double json_scan_number(const char *line, size_t len, const char *key) {
    char *quoted = xasprintf("\"%s\":", key);
    const size_t qlen = strlen(quoted);
    const char *value = NULL;
    for (size_t i = 0; !value && i + qlen <= len; i++)
        if (memcmp(line + i, quoted, qlen) == 0) value = line + i + qlen;
    free(quoted);
    if (!value) return NAN;
    // strtod stops at the first character that is not part of a number, and
    // the copy ends the text at the line's end.
    char number[64];
    const size_t left = len - (size_t)(value - line);
    const size_t n = left < sizeof number - 1 ? left : sizeof number - 1;
    memcpy(number, value, n);
    number[n] = '\0';
    char *end;
    const double x = strtod(number, &end);
    return end == number ? NAN : x;
}
