/* Unit tests of cli/nodes_cmd's rendering: the `arun nodes` table from node objects as GET
 * /v1/nodes sends them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/nodes_cmd.h"

static char *table_text(const char *list_json)
{
    json_t *list = json_loads(list_json, 0, NULL);
    struct table t;
    struct buf b;
    size_t i;
    json_t *n;

    assert_non_null(list);
    nodes_table_header(&t);
    json_array_foreach(list, i, n) nodes_table_row(&t, n);
    buf_init(&b, 1 << 16);
    assert_int_equal(table_render(&t, 0, &b), 0);
    char *s = buf_steal(&b);
    buf_cleanup(&b);
    table_cleanup(&t);
    json_decref(list);
    return s;
}

static void test_the_table_shows_state_engines_and_last_seen(void **state)
{
    char *s = table_text(
        "[{\"id\":\"gpu-a:8080\",\"address\":\"http://10.0.0.5:8080\",\"state\":\"up\","
        "\"last_seen_ms_ago\":1500,\"engines\":[{\"name\":\"qwen\",\"state\":\"ready\"},"
        "{\"name\":\"small\",\"state\":\"stopped\"}]},"
        "{\"id\":\"gpu-b:8080\",\"address\":\"http://10.0.0.6:8080\",\"state\":\"down\","
        "\"reason\":\"no heartbeat for 75 s\",\"last_seen_ms_ago\":75000,\"engines\":[]}]");
    assert_string_equal(s, "NODE        ADDRESS               STATE  ENGINES                   "
                           "LAST-SEEN\n"
                           "gpu-a:8080  http://10.0.0.5:8080  up     qwen:ready,small:stopped  "
                           "1s ago\n"
                           "gpu-b:8080  http://10.0.0.6:8080  down   -                         "
                           "1m15s ago\n");
    free(s);
}

static void test_many_engines_read_as_counts_and_absent_fields_as_a_dash(void **state)
{
    char *s =
        table_text("[{\"id\":\"n\",\"state\":\"left\",\"engines\":["
                   "{\"name\":\"a\",\"state\":\"ready\"},{\"name\":\"b\",\"state\":\"ready\"},"
                   "{\"name\":\"c\",\"state\":\"failed\"},{\"name\":\"d\"},"
                   "{\"name\":\"e\",\"state\":\"stopped\"}]}]");
    assert_non_null(strstr(s, "\nn     -        left   5 (2 ready)  -\n"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_table_shows_state_engines_and_last_seen),
        cmocka_unit_test(test_many_engines_read_as_counts_and_absent_fields_as_a_dash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
