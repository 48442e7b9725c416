-- Checks of the tags module; runs at load time, any failed assert fails the test.
local tags = require("tags")

local function cand(id, region)
  local t = {}
  if region ~= nil then t.region = region end
  return { id = id, tags = t }
end

local cands = { cand("a", "eu"), cand("b", "us"), cand("c", "eu"), cand("d"), cand("e", "eu"), cand("f", "us") }

assert(tags.value(cands[1], "region") == "eu")
assert(tags.value(cands[4], "region") == tags.MISSING)
assert(tags.value({ id = "x" }, "region") == tags.MISSING, "no tags table at all")

local groups, order = tags.group(cands, "region")
assert(#order == 3 and order[1] == "eu" and order[2] == "us" and order[3] == tags.MISSING)
assert(#groups.eu == 3 and groups.eu[1].id == "a" and groups.eu[2].id == "c" and groups.eu[3].id == "e")
assert(#groups.us == 2 and #groups[tags.MISSING] == 1)

local counts = tags.count(cands, "region")
assert(counts.eu == 3 and counts.us == 2 and counts[tags.MISSING] == 1)

local values = tags.values(cands, "region")
assert(#values == 3 and values[1] == "" and values[2] == "eu" and values[3] == "us")

local spread = tags.ids(tags.spread(cands, "region"))
assert(table.concat(spread, "") == "abdcfe", table.concat(spread, ""))

assert(#tags.spread({}, "region") == 0)
assert(next(tags.count({}, "region")) == nil)
