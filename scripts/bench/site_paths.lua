-- wrk script for the whole-site scenario: each request asks for the next
-- path of the file WRK_PATHS names (one URL path a line, percent-encoded),
-- round and round, so that every file of the site is asked for in turn.
-- WRK_GZIP=1 adds `Accept-Encoding: gzip` to every request.
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do
    paths[#paths + 1] = line
end
local headers = {}
if os.getenv("WRK_GZIP") == "1" then
    headers["Accept-Encoding"] = "gzip"
end
local i = 0

request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i], headers)
end
