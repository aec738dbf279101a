/* placeholder, replaced by the HTTP server */
typedef int http_server_placeholder;
