-- wrk script for bench/tenancy.sh: the request of bench/gateway/post.lua (read from beside this
-- file), with `Authorization: Bearer $WRK_KEY` when WRK_KEY is set (a member key of auth.mode
-- keys), and `Connection: close` when WRK_CLOSE=1, so that every request opens a new connection
-- (wrk reconnects after each answer) and, over https, pays a full TLS handshake: arun turns
-- session resumption off.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "../gateway/post.lua")
local key = os.getenv("WRK_KEY")
if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
end
if os.getenv("WRK_CLOSE") == "1" then
    wrk.headers["Connection"] = "close"
end
