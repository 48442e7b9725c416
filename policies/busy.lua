-- busy.lua: keep new allocations away from peers with a long pin queue.
--
-- A peer whose queue of pins waiting for IPFS is above MAX_QUEUE is slow to
-- take more work; giving it new pins makes them wait too. allocate() keeps
-- the built-in order but drops such peers, except:
--   * peers that already hold the pin (current = true) stay, so a busy peer
--     does not cause the pin to move around;
--   * when fewer than replication_min peers would remain, the least busy of
--     the dropped peers are added back at the end: a busy cluster pins
--     slowly rather than refusing pins.
-- For pins that go everywhere (-1) allocation does not apply and the hook
-- returns nil (built-in behaviour).

local MAX_QUEUE = 100

function allocate(pin, candidates)
  local need = pin.replication_min
  if need == -1 then
    return nil
  end
  if need < 1 then
    need = 1
  end

  local keep, busy = {}, {}
  for _, c in ipairs(candidates) do
    if c.current or c.pinqueue <= MAX_QUEUE then
      keep[#keep + 1] = c.id
    else
      busy[#busy + 1] = c
    end
  end

  if #keep < need then
    -- Least busy first; ties keep the built-in order.
    for i, c in ipairs(busy) do
      c.rank = i
    end
    table.sort(busy, function(a, b)
      if a.pinqueue ~= b.pinqueue then
        return a.pinqueue < b.pinqueue
      end
      return a.rank < b.rank
    end)
    for i = 1, math.min(need - #keep, #busy) do
      keep[#keep + 1] = busy[i].id
    end
  end
  return keep
end
