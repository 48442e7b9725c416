-- tiers.lua: replication factors by storage tier.
--
-- Clients say how much a pin matters with the "tier" metadata key:
--
--   ipfs-cluster-ctl pin add --metadata tier=hot <cid>
--
--   tier=hot     3 to 5 copies
--   tier=cold    1 to 2 copies
--   tier=global  a copy on every peer (-1, -1)
--   anything else, or no tier: no answer, the configured default applies
--
-- replication() is only consulted when the request leaves the factors at 0,
-- so an explicit --rmin/--rmax always wins over the tier. Returning nil is
-- how a hook says "use the built-in behaviour".

local TIERS = {
  hot = { 3, 5 },
  cold = { 1, 2 },
  global = { -1, -1 },
}

function replication(pin)
  local tier = pin.metadata.tier
  local f = tier and TIERS[tier]
  if f == nil then
    return nil
  end
  return f[1], f[2]
end
