/*
 * record.c: the engine record's JSON form. See record.h. Reading is lenient (a field a
 * previous version did not write reads as zero) so records survive upgrades; writing is
 * always the full set.
 */
#include "engines/record.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void copy_str(char *dst, size_t cap, const json_t *j)
{
    const char *s = json_string_value(j);
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

int engine_record_from_json(const json_t *j, struct engine_record *out)
{
    *out = (struct engine_record){0};
    if (!json_is_object(j))
        return -EINVAL;
    out->pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
    out->start_ticks = (uint64_t)json_integer_value(json_object_get(j, "start_ticks"));
    out->port = (uint16_t)json_integer_value(json_object_get(j, "port"));
    copy_str(out->backend, sizeof(out->backend), json_object_get(j, "backend"));
    copy_str(out->container, sizeof(out->container), json_object_get(j, "container"));
    copy_str(out->manifest, sizeof(out->manifest), json_object_get(j, "manifest"));
    out->started_at_ms = json_integer_value(json_object_get(j, "started_at_ms"));
    out->restarts = (uint32_t)json_integer_value(json_object_get(j, "restarts"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "loads"), i, v)
    {
        if (out->nloads < ENGINE_RECORD_LOADS)
            out->loads[out->nloads++] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

int engine_record_parse(const char *text, size_t len, struct engine_record *out)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    int rc = engine_record_from_json(j, out);
    json_decref(j);
    return rc;
}

char *engine_record_format(const struct engine_record *r)
{
    json_t *loads = json_array();
    for (size_t i = 0; i < r->nloads; i++)
        json_array_append_new(loads, json_integer((json_int_t)r->loads[i]));
    json_t *j =
        json_pack("{s:i, s:I, s:i, s:s, s:s, s:s, s:I, s:o, s:i}", "pid", (int)r->pid,
                  "start_ticks", (json_int_t)r->start_ticks, "port", (int)r->port, "backend",
                  r->backend, "container", r->container, "manifest", r->manifest, "started_at_ms",
                  (json_int_t)r->started_at_ms, "loads", loads, "restarts", (int)r->restarts);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}
