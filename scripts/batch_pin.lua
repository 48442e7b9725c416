-- batch_pin: pin every CID of a list file, each line with its own options.
--
-- Usage:
--   ipfs-cluster script batch_pin [--dry-run] FILE [key=value ...]
--
-- FILE holds one pin per line: a CID (or an /ipfs/ or /ipns/ path)
-- followed by options written key=value, for example
--
--   bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi name=db-1 rmin=2 rmax=3
--   bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su name="nightly dump" meta.owner=alice expire=30d
--
-- Keys: name, rmin, rmax, replication (both factors; -1 = every peer),
-- mode (recursive or direct), expire (a duration: 90s, 12h, 30d, 2w),
-- allocations (comma-separated peer ids) and meta.KEY for metadata. A value
-- with spaces goes in double quotes. Blank lines and lines starting with #
-- are skipped; FILE "-" reads standard input. The key=value arguments after
-- FILE are defaults for every line; a line's own options win (a later
-- option wins, and replication and rmin/rmax replace each other).
--
-- A line that fails (bad syntax, a refused or failed pin) is reported on
-- stderr as FILE:LINE: error, and the script goes on with the next one. It
-- prints a summary and exits with status 1 when any line failed.
-- --dry-run prints what each line would pin without pinning.

local cluster = require("cluster")
local cid = require("cid")

local USAGE = "usage: ipfs-cluster script batch_pin [--dry-run] FILE [key=value ...]"

-- tokens splits a line on blanks; key="a b" keeps its spaces.
local function tokens(line)
  local out, i = {}, 1
  while true do
    local s = string.find(line, "%S", i)
    if not s then return out end
    local e = string.find(line, "%s", s) or #line + 1
    local q = string.find(line, '="', s, true)
    if q and q < e then
      local close = string.find(line, '"', q + 2, true)
      if not close then return nil, "unterminated quote" end
      table.insert(out, string.sub(line, s, q) .. string.sub(line, q + 2, close - 1))
      i = close + 1
    else
      table.insert(out, string.sub(line, s, e - 1))
      i = e
    end
  end
end

local function integer(key, v)
  local n = tonumber(v)
  if not n or n ~= math.floor(n) then
    error(key .. "=" .. v .. ": not an integer", 0)
  end
  return n
end

-- apply sets one key=value option on the pin options table o.
local function apply(o, token)
  local key, value = string.match(token, "^([^=]+)=(.*)$")
  if not key then
    error("option " .. token .. ": want key=value", 0)
  end
  local meta = string.match(key, "^meta%.(.+)$")
  if meta then
    o.metadata = o.metadata or {}
    o.metadata[meta] = value
  elseif key == "name" then
    o.name = value
  elseif key == "rmin" then
    o.replication_min, o.replication = integer(key, value), nil
  elseif key == "rmax" then
    o.replication_max, o.replication = integer(key, value), nil
  elseif key == "replication" then
    o.replication, o.replication_min, o.replication_max = integer(key, value), nil, nil
  elseif key == "mode" then
    o.mode = value
  elseif key == "expire" then
    o.expire_in = value
  elseif key == "allocations" then
    o.user_allocations = {}
    for id in string.gmatch(value, "[^,%s]+") do
      table.insert(o.user_allocations, id)
    end
  else
    error("unknown option " .. key .. " (name, rmin, rmax, replication, mode, expire, allocations, meta.KEY)", 0)
  end
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    if type(v) == "table" then v = copy(v) end
    c[k] = v
  end
  return c
end

-- options builds the pin options of one line: the defaults, then the
-- line's own key=value tokens (toks[2] onwards); a later option wins, and
-- replication and rmin/rmax replace each other.
local function options(defaults, toks)
  local o = copy(defaults)
  for i = 2, #toks do
    apply(o, toks[i])
  end
  return o
end

local function describe(o)
  local parts = {}
  for k, v in pairs(o) do
    if type(v) == "table" then
      local items = {}
      for kk, vv in pairs(v) do
        if type(kk) == "number" then
          table.insert(items, vv)
        else
          table.insert(items, kk .. "=" .. vv)
        end
      end
      table.sort(items)
      v = "{" .. table.concat(items, ",") .. "}"
    end
    table.insert(parts, k .. "=" .. tostring(v))
  end
  table.sort(parts)
  return table.concat(parts, " ")
end

-- strip removes the script's own file:line from an error raised by the
-- cluster module: the report names the list file's line instead.
local function strip(err)
  return (string.gsub(tostring(err), "^[%w_%-%.]+%.lua:%d+: ", ""))
end

local dry_run, file = false, nil
local defaults = {}
for _, a in ipairs(arg) do
  if a == "--dry-run" or a == "-n" then
    dry_run = true
  elseif file == nil and not string.find(a, "=", 1, true) then
    file = a
  else
    local ok, err = pcall(apply, defaults, a)
    if not ok then error(err .. "\n" .. USAGE, 0) end
  end
end
if file == nil then
  error(USAGE, 0)
end

local label = file
if file == "-" then label = "stdin" end
local pinned, failed, seen = 0, 0, 0
for line, n in cluster.lines(file) do
  seen = seen + 1
  local ok, err = pcall(function()
    local toks, terr = tokens(line)
    if not toks then error(terr, 0) end
    local o = options(defaults, toks)
    if dry_run then
      if not string.find(toks[1], "/", 1, true) then
        local info, cerr = cid.info(toks[1])
        if not info then error("invalid CID " .. toks[1] .. ": " .. tostring(cerr), 0) end
      end
      print("pin " .. toks[1] .. " " .. describe(o))
    else
      local pin = cluster.pin(toks[1], o)
      print(string.format("pinned %s %s (%d allocations)", pin.cid, pin.name, #pin.allocations))
    end
  end)
  if ok then
    pinned = pinned + 1
  else
    failed = failed + 1
    cluster.warn(string.format("%s:%d: %s", label, n, strip(err)))
  end
  cluster.progress(seen)
end

local verb = dry_run and "would pin" or "pinned"
print(string.format("%s %d of %d, %d failed", verb, pinned, seen, failed))
if failed > 0 then
  cluster.exit(1)
end
