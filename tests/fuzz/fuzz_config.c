/*
 * fuzz_config.c: libFuzzer target for core/config (with config_walk, config_engines and
 * config_routes, compiled in: FUZZ_EXTRA_config in CMakeLists.txt). The input is an arun.yaml.
 * Besides the sanitizers' findings (every error path frees what it made: LeakSanitizer) it checks
 * what `arun serve` and `arun config check` rely on:
 *   - the result is 0 with a config and no error line, or -EINVAL (-EFBIG past 1 MiB) with no
 *     config and at least one error line, each "NAME:LINE…", in valid UTF-8;
 *   - an accepted config's resolved form (config_to_json, what `arun config check` prints) is
 *     itself an arun.yaml (JSON is YAML) that is accepted and resolves to the same form.
 * Built with -DARUN_FUZZ=ON (clang); `make fuzz` runs it for a while, `make test` a short bounded
 * round (ctest fuzz_config_short) over tests/fuzz/corpus/config.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/config.h"

static void check_errors(const struct buf *errors)
{
    if (errors->len == 0 || strncmp(buf_cstr((struct buf *)errors), "fuzz.yaml", 9) != 0)
        abort();
    json_t *s = json_stringn(errors->data, errors->len); /* NULL when not valid UTF-8 */
    if (s == NULL)
        abort();
    json_decref(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    struct config *cfg = NULL, *again = NULL;
    struct buf errors;
    buf_init(&errors, 1 << 20);
    int rc = config_parse((const char *)data, n, "fuzz.yaml", &cfg, &errors);
    if (rc != 0) {
        if ((rc != -EINVAL && rc != -EFBIG) || cfg != NULL)
            abort();
        check_errors(&errors);
        buf_cleanup(&errors);
        return 0;
    }
    if (cfg == NULL || errors.len != 0)
        abort();
    json_t *resolved = config_to_json(cfg);
    char *text = json_dumps(resolved, JSON_COMPACT);
    if (config_parse(text, strlen(text), "fuzz.yaml", &again, &errors) != 0)
        abort();
    json_t *resolved_again = config_to_json(again);
    if (!json_equal(resolved, resolved_again))
        abort();
    json_decref(resolved_again);
    config_free(again);
    free(text);
    json_decref(resolved);
    config_free(cfg);
    buf_cleanup(&errors);
    return 0;
}
