-- wrk script for scripts/bench/todo.sh: mixed reads and writes against
-- examples/todo.rs, whose database holds TODO_SEED todos (ids 1 to
-- TODO_SEED) when the run starts. Of every 20 requests:
--
--   16  GET /todos/ID of a seeded todo, at random
--    2  PATCH one of them, {"done": true} or {"done": false}
--    1  POST a new todo
--    1  DELETE a todo a POST of this run made (when none is left yet,
--       one more GET)
--
-- Every answer should be a 2xx: a DELETE only takes an id whose POST has
-- been answered, and each id once. wrk counts any other answer as
-- "Non-2xx or 3xx responses". One Lua state per wrk thread: run it with
-- -t1, or each thread deletes what its own POSTs made.
local seed = tonumber(os.getenv("TODO_SEED") or "1000")
local json = { ["Content-Type"] = "application/json" }
local created = {}
local n = 0
math.randomseed(42)

request = function()
    n = n + 1
    local kind = n % 20
    local path = "/todos/" .. math.random(seed)
    if kind < 16 then
        return wrk.format("GET", path)
    elseif kind < 18 then
        local done = kind == 16 and "true" or "false"
        return wrk.format("PATCH", path, json, '{"done": ' .. done .. '}')
    elseif kind == 18 then
        return wrk.format("POST", "/todos", json, '{"title": "bench ' .. n .. '"}')
    end
    local location = table.remove(created)
    if location then
        return wrk.format("DELETE", location)
    end
    return wrk.format("GET", path)
end

response = function(status, headers, body)
    if status == 201 then
        created[#created + 1] = headers["Location"] or headers["location"]
    end
end
