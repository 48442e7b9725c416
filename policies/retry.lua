-- retry.lua: exponential back-off, then a terminal failure.
--
-- retry_priority(pin, attempts, err) is called when a pin failed for the
-- attempts-th time and is about to be queued again:
--
--   * errors that retrying cannot fix (PERMANENT) fail the pin at once;
--   * after MAX_ATTEMPTS failures the pin is marked failed and stops using
--     queue slots (`pin recover` re-queues it);
--   * the first failure retries at once with priority (it is often a
--     transient network error);
--   * later failures retry in the normal queue after BASE_DELAY, doubling
--     each time up to MAX_DELAY: 30s, 1m, 2m, 4m, ...

local duration = require("duration")

local MAX_ATTEMPTS = 8
local BASE_DELAY = duration.parse("30s")
local MAX_DELAY = duration.parse("6h")
local PERMANENT = { "invalid cid", "unsupported codec", "block was not found locally (offline)" }

function retry_priority(pin, attempts, err)
  local e = string.lower(err)
  for _, text in ipairs(PERMANENT) do
    if string.find(e, text, 1, true) then
      return "failed"
    end
  end
  if attempts >= MAX_ATTEMPTS then
    return "failed"
  end
  if attempts <= 1 then
    return "priority", 0
  end
  return "normal", math.min(BASE_DELAY * 2 ^ (attempts - 2), MAX_DELAY)
end
