-- duration: time spans written the way operators write them.
--
--   local duration = require("duration")
--   duration.parse("1h30m")   --> 5400
--   duration.parse("500ms")   --> 0.5
--   duration.format(5400)     --> "1h30m"
--
-- duration.parse(s) -> seconds | nil, err
--     A sequence of number+unit pairs, as in Go: "1h30m", "2d", "1.5h",
--     "90s", "250ms". Units: ms, s, m, h, d (24h), w (7d). A bare number is
--     seconds ("30"), and a number (not a string) is returned as is when it
--     is non-negative. Negative or malformed durations, and strings longer
--     than 64 characters, give nil and a message.
-- duration.format(seconds) -> string
--     The inverse for whole units: "1h30m", "2d", "45s", "0s"; a fraction
--     of a second is written in ms ("1m0.5s" is written "1m500ms").
-- duration.UNITS
--     The unit table: unit name -> seconds.

local M = {}

M.UNITS = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

local MAX_INPUT = 64

local function invalid(s, why)
  return nil, "invalid duration " .. string.format("%q", s) .. ": " .. why
end

function M.parse(s)
  if type(s) == "number" then
    if s >= 0 then
      return s
    end
    return nil, "duration must not be negative: " .. tostring(s)
  end
  if type(s) ~= "string" then
    return nil, "duration must be a string or a number, got " .. type(s)
  end
  -- Short inputs and patterns of disjoint classes keep matching linear:
  -- pattern matching runs in Go and is not interrupted by the time budget.
  if #s > MAX_INPUT then
    return nil, "invalid duration: longer than " .. MAX_INPUT .. " characters"
  end
  local str = string.match(s, "^%s*(%S*)%s*$")
  if str == nil then
    return invalid(s, "blanks inside")
  end
  if str == "" then
    return invalid(s, "empty")
  end
  if string.match(str, "^%d*%.?%d+$") then
    return tonumber(str)
  end
  local total, pos = 0, 1
  while pos <= #str do
    local text, unit, stop = string.match(str, "^([%d%.]+)(%a+)()", pos)
    local num = text and string.match(text, "^%d*%.?%d+$") and tonumber(text)
    if num == nil then
      return invalid(s, "want pairs of number and unit such as 1h30m")
    end
    local mult = M.UNITS[unit]
    if mult == nil then
      return invalid(s, "unknown unit " .. string.format("%q", unit) .. " (want ms, s, m, h, d or w)")
    end
    total = total + num * mult
    pos = stop
  end
  return total
end

local ORDER = { { "w", 604800 }, { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } }

function M.format(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    error("duration.format: want a non-negative number, got " .. tostring(seconds), 2)
  end
  local whole = math.floor(seconds)
  local ms = math.floor((seconds - whole) * 1000 + 0.5)
  if ms == 1000 then
    whole, ms = whole + 1, 0
  end
  local parts = {}
  for _, u in ipairs(ORDER) do
    local n = math.floor(whole / u[2])
    if n > 0 then
      parts[#parts + 1] = string.format("%d%s", n, u[1])
      whole = whole - n * u[2]
    end
  end
  if ms > 0 then
    parts[#parts + 1] = string.format("%dms", ms)
  end
  if #parts == 0 then
    return "0s"
  end
  return table.concat(parts)
end

return M
