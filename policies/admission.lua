-- admission.lua: admission control by name, metadata and per-owner quota.
--
-- A pin is admitted when:
--   * its name starts with one of NAME_PREFIXES;
--   * it carries every metadata key in REQUIRED_METADATA;
--   * its declared size (metadata "size", e.g. "20GiB"), if any, is at most
--     MAX_SIZE;
--   * its owner is below their pin quota (see below).
-- Otherwise admit() returns false and a reason, which the API returns to
-- the client with a 4xx status.
--
-- About the quota. A policy sees one pin at a time and cannot list the
-- pinset, so it cannot count an owner's pins by itself. Counting in a Lua
-- variable would be wrong: hooks run on a pool of Lua states, each with its
-- own globals, states are replaced after errors and after a number of calls,
-- every reload and restart starts from zero, each peer admits only the pins
-- its own API receives, and admit() never sees unpins. So this example
-- enforces the quota against a count the pin carries: the metadata key
-- "owner_pin_count", which the ingest gateway in front of the cluster API
-- sets from its own records (and which it must overwrite when a client sends
-- it). A pin without the count is refused: failing closed keeps a
-- misconfigured gateway from bypassing the quota. The check is only as
-- trustworthy as that gateway.

local size = require("size")

local NAME_PREFIXES = { "backups/", "datasets/", "web/" }
local REQUIRED_METADATA = { "owner", "team" }
local MAX_SIZE = size.parse("100GiB")
local QUOTA = { default = 1000, ["archive-bot"] = 100000 }
local COUNT_KEY = "owner_pin_count"

local function has_prefix(s, prefix)
  return string.sub(s, 1, #prefix) == prefix
end

function admit(pin)
  local named = false
  for _, prefix in ipairs(NAME_PREFIXES) do
    if has_prefix(pin.name, prefix) then
      named = true
      break
    end
  end
  if not named then
    return false, "pin name must start with one of: " .. table.concat(NAME_PREFIXES, ", ")
  end

  local md = pin.metadata
  for _, key in ipairs(REQUIRED_METADATA) do
    if md[key] == nil or md[key] == "" then
      return false, "metadata " .. key .. " is required"
    end
  end

  if md.size ~= nil then
    local bytes, err = size.parse(md.size)
    if bytes == nil then
      return false, "metadata size: " .. err
    end
    if bytes > MAX_SIZE then
      return false, "declared size " .. md.size .. " is above the limit of " .. size.format(MAX_SIZE)
    end
  end

  local limit = QUOTA[md.owner] or QUOTA.default
  local count = tonumber(md[COUNT_KEY])
  if count == nil then
    return false, "metadata " .. COUNT_KEY .. " is missing or not a number (it is set by the ingest gateway)"
  end
  if count >= limit then
    return false, "owner " .. md.owner .. " has " .. count .. " pins, the quota is " .. limit
  end
  return true
end
