-- repin_replication: pin every pin again with new replication factors.
--
-- Usage:
--   ipfs-cluster script repin_replication [--dry-run] MIN MAX [FILTER]
--
-- Streams the pinset and pins each pin again with replication_min MIN and
-- replication_max MAX (-1 -1 pins on every peer), keeping its name, mode,
-- metadata, expiry and origins. Pins already at MIN..MAX are left alone.
-- FILTER limits the run to some pins: meta.KEY=VALUE selects the pins whose
-- metadata KEY is VALUE; anything else is a Lua pattern that the pin's name
-- must contain (string.find), e.g. "^backups/".
--
-- A pin that fails is reported on stderr and the run goes on; the script
-- prints a summary and exits with status 1 when any pin failed. --dry-run
-- prints what would change without pinning.

local cluster = require("cluster")

local USAGE = "usage: ipfs-cluster script repin_replication [--dry-run] MIN MAX [FILTER]"

local dry_run = false
local rest = {}
for _, a in ipairs(arg) do
  if a == "--dry-run" or a == "-n" then
    dry_run = true
  else
    table.insert(rest, a)
  end
end

local function factor(s)
  local n = tonumber(s)
  if not n or n ~= math.floor(n) or n == 0 or n < -1 then
    error("replication factor " .. tostring(s) .. ": want an integer >= 1, or -1\n" .. USAGE, 0)
  end
  return n
end

if #rest < 2 or #rest > 3 then
  error(USAGE, 0)
end
local rmin, rmax = factor(rest[1]), factor(rest[2])
if (rmin == -1) ~= (rmax == -1) or rmax < rmin then
  error(string.format("replication %d..%d: want MIN <= MAX, or -1 -1 for every peer", rmin, rmax), 0)
end

local matches = function(pin) return true end
if rest[3] then
  local key, value = string.match(rest[3], "^meta%.([^=]+)=(.*)$")
  if key then
    matches = function(pin) return pin.metadata[key] == value end
  else
    local pattern = rest[3]
    local ok, err = pcall(string.find, "", pattern)
    if not ok then error("filter " .. pattern .. ": " .. tostring(err), 0) end
    matches = function(pin) return string.find(pin.name, pattern) ~= nil end
  end
end

local function strip(err)
  return (string.gsub(tostring(err), "^[%w_%-%.]+%.lua:%d+: ", ""))
end

local seen, selected, unchanged, repinned, failed = 0, 0, 0, 0, 0
for pin in cluster.pins() do
  seen = seen + 1
  if matches(pin) then
    selected = selected + 1
    if pin.replication_min == rmin and pin.replication_max == rmax then
      unchanged = unchanged + 1
    elseif dry_run then
      print(string.format("would repin %s %s: %d..%d -> %d..%d", pin.cid, pin.name,
        pin.replication_min, pin.replication_max, rmin, rmax))
      repinned = repinned + 1
    else
      local opts = {
        name = pin.name,
        mode = pin.mode,
        metadata = pin.metadata,
        origins = pin.origins,
        expire_at = pin.expire_at,
        replication_min = rmin,
        replication_max = rmax,
      }
      local ok, res = pcall(cluster.pin, pin.cid, opts)
      if ok then
        repinned = repinned + 1
        local where = "every peer"
        if #res.allocations > 0 then
          where = #res.allocations .. " peers"
        end
        print(string.format("repinned %s %s: %d..%d -> %d..%d on %s", pin.cid, pin.name,
          pin.replication_min, pin.replication_max, rmin, rmax, where))
      else
        failed = failed + 1
        cluster.warn(strip(res))
      end
    end
  end
  cluster.progress(seen)
end

print(string.format("%s %d of %d selected pins (%d in the pinset), %d already at %d..%d, %d failed",
  dry_run and "would repin" or "repinned", repinned, selected, seen, unchanged, rmin, rmax, failed))
if failed > 0 then
  cluster.exit(1)
end
