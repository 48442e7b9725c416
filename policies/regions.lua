-- regions.lua: spread the copies of every pin across regions.
--
-- Peers carry a "region" tag (the informer's tags in service.json, e.g.
-- "tags": {"region": "eu-west"}). allocate() reorders the candidates so that
-- the first ones the daemon takes cover every region:
--
--   1. up to MIN_PER_REGION peers of each region, regions in the order their
--      first candidate appears, peers in the built-in order;
--   2. then the remaining peers round-robin across regions.
--
-- The daemon takes the first replication_max peers of the answer, so with
-- three regions and a factor of 3 each region holds one copy, and a region
-- that goes away simply stops appearing among the candidates.
--
-- REQUIRED_REGIONS lists regions that must each get MIN_PER_REGION copies.
-- When one of them has too few candidates the hook returns an empty list:
-- the pin then fails allocation with an error instead of being placed
-- without that region. Leave it empty for best effort.
--
-- Peers without a region tag form their own group, which is used last.

local tags = require("tags")

local TAG = "region"
local MIN_PER_REGION = 1
local REQUIRED_REGIONS = {} -- e.g. { "eu-west", "us-east" }

function allocate(pin, candidates)
  local groups, order = tags.group(candidates, TAG)

  for _, region in ipairs(REQUIRED_REGIONS) do
    local g = groups[region]
    if g == nil or #g < MIN_PER_REGION then
      return {}
    end
  end

  -- Regions in order of first appearance, untagged peers last.
  local regions = {}
  for _, r in ipairs(order) do
    if r ~= tags.MISSING then
      regions[#regions + 1] = groups[r]
    end
  end
  if groups[tags.MISSING] ~= nil then
    regions[#regions + 1] = groups[tags.MISSING]
  end

  -- First pass: the minimum of every region.
  local out, n = {}, 0
  for _, g in ipairs(regions) do
    for i = 1, math.min(MIN_PER_REGION, #g) do
      n = n + 1
      out[n] = g[i].id
    end
  end

  -- Then one more peer of every region per round.
  local round = MIN_PER_REGION + 1
  while n < #candidates do
    for j = 1, #regions do
      local c = regions[j][round]
      if c ~= nil then
        n = n + 1
        out[n] = c.id
      end
    end
    round = round + 1
  end
  return out
end
