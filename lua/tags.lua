-- tags: group, count and spread allocation candidates by one of their tags.
--
--   local tags = require("tags")
--
-- A candidate is one of the tables allocate(pin, candidates) receives; its
-- `tags` field maps tag names to values (both strings). A candidate that lacks
-- the tag belongs to the group named tags.MISSING (the empty string), so no
-- candidate is ever dropped by these functions.
--
-- tags.MISSING
--     "" : the group of candidates without the tag.
-- tags.value(c, key) -> string
--     The candidate's value for the tag `key`, or tags.MISSING.
-- tags.group(cands, key) -> groups, order
--     groups maps each value to the array of its candidates, in input order;
--     order is the array of values in order of first appearance.
-- tags.count(cands, key) -> counts
--     counts maps each value to the number of candidates that have it.
-- tags.values(cands, key) -> array
--     The distinct values, sorted.
-- tags.spread(cands, key) -> array
--     The candidates reordered round-robin across groups: the first of every
--     group (groups in order of first appearance), then the second of every
--     group, and so on. Taking the first N spreads N copies over as many
--     groups as possible while keeping the built-in order inside each group.
-- tags.ids(cands) -> array
--     The `id` of each candidate, in order: what allocate() may return.

local M = {}

local MISSING = ""
M.MISSING = MISSING

-- Tag values are strings (the engine builds the tables), so no conversion
-- is needed; loops are numeric because they run per candidate on the
-- allocation path, where ipairs() costs a library call per element.
function M.value(c, key)
  local t = c.tags
  local v = t and t[key]
  if v == nil then
    return MISSING
  end
  return v
end

function M.group(cands, key)
  local groups, order = {}, {}
  for i = 1, #cands do
    local c = cands[i]
    local t = c.tags
    local v = t and t[key]
    if v == nil then
      v = MISSING
    end
    local g = groups[v]
    if g == nil then
      g = {}
      groups[v] = g
      order[#order + 1] = v
    end
    g[#g + 1] = c
  end
  return groups, order
end

function M.count(cands, key)
  local counts = {}
  for i = 1, #cands do
    local v = M.value(cands[i], key)
    counts[v] = (counts[v] or 0) + 1
  end
  return counts
end

function M.values(cands, key)
  local seen, out = {}, {}
  for i = 1, #cands do
    local v = M.value(cands[i], key)
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  table.sort(out)
  return out
end

function M.spread(cands, key)
  local groups, order = M.group(cands, key)
  local out, n, round = {}, 0, 1
  while n < #cands do
    for j = 1, #order do
      local c = groups[order[j]][round]
      if c ~= nil then
        n = n + 1
        out[n] = c
      end
    end
    round = round + 1
  end
  return out
end

function M.ids(cands)
  local out = {}
  for i = 1, #cands do
    out[i] = cands[i].id
  end
  return out
end

return M
