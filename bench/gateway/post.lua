-- wrk script for bench/gateway.sh: every request is the same small non-streaming chat completion
-- (POST, JSON body). The body comes from WRK_BODY when set. When PORTKEY_UPSTREAM is set (a base
-- URL such as http://127.0.0.1:9001/v1), the Portkey headers that make it forward to that local
-- engine as an OpenAI-compatible provider are added; the key is a dummy the mock never checks.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
wrk.headers["Content-Type"] = "application/json"
local upstream = os.getenv("PORTKEY_UPSTREAM")
if upstream and upstream ~= "" then
    wrk.headers["x-portkey-provider"] = "openai"
    wrk.headers["x-portkey-custom-host"] = upstream
    wrk.headers["Authorization"] = "Bearer bench"
end
