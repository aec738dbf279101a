/*
 * placeholder.c: the console's table (src/http/assets.h) when the build has no node/npm to
 * build the real one: one page at / that says how to get the console. CMake links it into arun
 * instead of the generated console_assets.c.
 */
#include "http/assets.h"

static const char page[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>arun console</title>"
    "</head><body><main><h1>arun</h1><p>This arun was built without its console: the build "
    "found no node and npm. Install them (<code>scripts/deps.sh</code> does) and run "
    "<code>make</code> again, then reload this page.</p><p>The API is served as usual: "
    "<code>/v1/models</code>, <code>/v1/engines</code>, <code>/healthz</code>.</p></main>"
    "</body></html>\n";

const struct http_asset console_assets[] = {
    {"/index.html", "text/html; charset=utf-8", "\"placeholder-1\"", false,
     (const unsigned char *)page, sizeof(page) - 1, NULL, 0, NULL, 0},
};
const size_t console_assets_count = 1;
