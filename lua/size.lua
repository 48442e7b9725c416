-- size: byte sizes written the way operators write them.
--
--   local size = require("size")
--   size.parse("10GiB")   --> 10737418240
--   size.parse("500MB")   --> 500000000
--   size.format(1536)     --> "1.5KiB"
--
-- size.parse(s) -> bytes | nil, err
--     A number with an optional unit, blanks allowed between them. Units are
--     case-insensitive: B; K, KB, M, MB, G, GB, T, TB, P, PB (powers of 1000);
--     KiB, MiB, GiB, TiB, PiB (powers of 1024). Fractions are allowed
--     ("1.5GiB") and the result is rounded down to whole bytes. A number
--     (not a string) is returned as is when it is a whole, non-negative
--     number. Anything else, negative sizes and strings longer than 64
--     characters included, gives nil and a message.
-- size.format(n) -> string
--     n bytes in the largest binary unit that keeps the value at least 1,
--     with at most two decimals and no blank: "512B", "1.5KiB", "10GiB".
--     size.parse(size.format(n)) is n whenever the value needed no rounding.
-- size.UNITS
--     The unit table: lower-case unit name -> multiplier.

local M = {}

local KB, KIB = 1000, 1024
local MAX_INPUT = 64

M.UNITS = {
  [""] = 1, b = 1,
  k = KB, kb = KB, m = KB ^ 2, mb = KB ^ 2, g = KB ^ 3, gb = KB ^ 3,
  t = KB ^ 4, tb = KB ^ 4, p = KB ^ 5, pb = KB ^ 5,
  ki = KIB, kib = KIB, mi = KIB ^ 2, mib = KIB ^ 2, gi = KIB ^ 3, gib = KIB ^ 3,
  ti = KIB ^ 4, tib = KIB ^ 4, pi = KIB ^ 5, pib = KIB ^ 5,
}

function M.parse(s)
  if type(s) == "number" then
    if s >= 0 and s == math.floor(s) then
      return s
    end
    return nil, "size must be a whole, non-negative number of bytes: " .. tostring(s)
  end
  if type(s) ~= "string" then
    return nil, "size must be a string or a number, got " .. type(s)
  end
  -- Short inputs and a pattern of disjoint classes keep the match linear:
  -- pattern matching runs in Go and is not interrupted by the time budget.
  if #s > MAX_INPUT then
    return nil, "invalid size: longer than " .. MAX_INPUT .. " characters"
  end
  local text, unit = string.match(s, "^%s*([%d%.]+)%s*(%a*)%s*$")
  local num = text and string.match(text, "^%d*%.?%d+$") and tonumber(text)
  if num == nil then
    return nil, "invalid size " .. string.format("%q", s) .. ": want a number and a unit such as 10GiB or 500MB"
  end
  local mult = M.UNITS[string.lower(unit)]
  if mult == nil then
    return nil, "unknown size unit " .. string.format("%q", unit) .. " in " .. string.format("%q", s)
  end
  return math.floor(num * mult)
end

local ORDER = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }

function M.format(n)
  if type(n) ~= "number" or n < 0 then
    error("size.format: want a non-negative number, got " .. tostring(n), 2)
  end
  local i, v = 1, n
  while v >= KIB and i < #ORDER do
    v = v / KIB
    i = i + 1
  end
  local s
  if i == 1 then
    s = string.format("%d", math.floor(v))
  else
    s = string.format("%.2f", v)
    s = string.gsub(s, "%.?0+$", "")
  end
  return s .. ORDER[i]
end

return M
