-- Checks of the duration module.
local duration = require("duration")

local cases = {
  { "1h30m", 5400 }, { "90s", 90 }, { "1.5h", 5400 }, { "2d", 172800 }, { "1w", 604800 },
  { "500ms", 0.5 }, { "30", 30 }, { " 1m ", 60 }, { "1h1m1s", 3661 }, { "1m30s500ms", 90.5 },
  { 12, 12 }, { "0s", 0 },
}
for _, c in ipairs(cases) do
  local got, err = duration.parse(c[1])
  assert(got == c[2], tostring(c[1]) .. " -> " .. tostring(got) .. " " .. tostring(err))
end

for _, bad in ipairs({ "", "h", "1x", "1h 30m", "-5s", "1.h", -1, {}, "5 s" }) do
  local got, err = duration.parse(bad)
  assert(got == nil and type(err) == "string", "accepted " .. tostring(bad))
end
assert(string.find(select(2, duration.parse("1x")), 'unknown unit "x"', 1, true))

local fmt = { { 0, "0s" }, { 45, "45s" }, { 5400, "1h30m" }, { 172800, "2d" }, { 694861, "1w1d1h1m1s" },
  { 0.5, "500ms" }, { 60.25, "1m250ms" }, { 0.9996, "1s" } }
for _, c in ipairs(fmt) do
  assert(duration.format(c[1]) == c[2], c[1] .. " -> " .. duration.format(c[1]))
end
for _, n in ipairs({ 0, 1, 59, 3600, 5400, 90061, 604800 * 3 + 7 }) do
  assert(duration.parse(duration.format(n)) == n, "round trip " .. n)
end
assert(not pcall(duration.format, "x"))

local long, err = duration.parse(string.rep("9", 100) .. "s")
assert(long == nil and string.find(err, "longer than 64", 1, true))
