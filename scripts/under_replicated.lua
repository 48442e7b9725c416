-- under_replicated: list the pins that fewer peers hold than their replication_min.
--
-- Usage:
--   ipfs-cluster script under_replicated [--fail]
--
-- Streams the pinset and asks each pin's status on every peer. A pin is
-- under-replicated when fewer peers report it "pinned" than its
-- replication_min (for a pin on every peer, -1, than the number of
-- peers). Each one is printed as a tab-separated line:
--
--   CID  PINNED/WANTED  NAME  STATUSES
--
-- where STATUSES counts the peers in each status (pinning=1 pin_error=1).
-- A last line starting with # sums up. With --fail the script exits with
-- status 1 when it found any. A status that cannot be read is reported on
-- stderr and counts as a failure too.

local cluster = require("cluster")

local fail = false
for _, a in ipairs(arg) do
  if a == "--fail" then
    fail = true
  else
    error("unknown argument " .. a .. "\nusage: ipfs-cluster script under_replicated [--fail]", 0)
  end
end

local npeers = #cluster.peers()

local function statuses(st)
  local parts = {}
  for status, n in pairs(st.counts) do
    if status ~= "pinned" then
      table.insert(parts, status .. "=" .. n)
    end
  end
  table.sort(parts)
  return table.concat(parts, " ")
end

local function strip(err)
  return (string.gsub(tostring(err), "^[%w_%-%.]+%.lua:%d+: ", ""))
end

local seen, under, failed = 0, 0, 0
for pin in cluster.pins() do
  seen = seen + 1
  local want = pin.replication_min
  if want == -1 then
    want = npeers
  end
  local ok, st = pcall(cluster.status, pin.cid)
  if not ok then
    failed = failed + 1
    cluster.warn(strip(st))
  elseif st.pinned < want then
    under = under + 1
    print(string.format("%s\t%d/%d\t%s\t%s", pin.cid, st.pinned, want, pin.name, statuses(st)))
  end
  cluster.progress(seen)
end

print(string.format("# %d of %d pins under-replicated (%d peers)%s", under, seen, npeers,
  failed > 0 and string.format(", %d statuses not read", failed) or ""))
if failed > 0 or (fail and under > 0) then
  cluster.exit(1)
end
