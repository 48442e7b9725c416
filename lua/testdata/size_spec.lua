-- Checks of the size module.
local size = require("size")

local cases = {
  { "10GiB", 10737418240 }, { "500MB", 500000000 }, { "1.5 KiB", 1536 }, { "42", 42 },
  { " 7 b ", 7 }, { "1k", 1000 }, { "2kib", 2048 }, { "1TB", 1e12 }, { "1PiB", 1024 ^ 5 },
  { "0.5MiB", 524288 }, { ".5GB", 500000000 }, { "3G", 3e9 }, { "1Mi", 1048576 },
  { 1024, 1024 },
}
for _, c in ipairs(cases) do
  local got, err = size.parse(c[1])
  assert(got == c[2], tostring(c[1]) .. " -> " .. tostring(got) .. " " .. tostring(err))
end

for _, bad in ipairs({ "", "GiB", "10 parsecs", "-1GB", "1.2.3MB", "10GiB extra", 1.5, -3, true }) do
  local got, err = size.parse(bad)
  assert(got == nil and type(err) == "string", "accepted " .. tostring(bad))
end
assert(string.find(select(2, size.parse("10 parsecs")), "unknown size unit", 1, true))

local fmt = { { 0, "0B" }, { 512, "512B" }, { 1024, "1KiB" }, { 1536, "1.5KiB" }, { 10737418240, "10GiB" },
  { 1234567, "1.18MiB" }, { 1024 ^ 5 * 3, "3PiB" }, { 1024 ^ 6, "1024PiB" } }
for _, c in ipairs(fmt) do
  assert(size.format(c[1]) == c[2], c[1] .. " -> " .. size.format(c[1]))
end
for _, n in ipairs({ 0, 1, 1023, 1024, 1536, 10737418240, 1024 ^ 4 * 7 }) do
  assert(size.parse(size.format(n)) == n, "round trip " .. n)
end
assert(not pcall(size.format, -1))

-- Long inputs are refused up front (pattern matching is not interruptible).
local long, err = size.parse(string.rep("1", 65) .. "x")
assert(long == nil and string.find(err, "longer than 64", 1, true))
