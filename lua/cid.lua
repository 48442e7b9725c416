-- cid: read the version, codec and hash function of a CID string.
--
--   local cid = require("cid")
--   local info = cid.info(pin.cid)
--   if info and info.codec == "raw" then ... end
--
-- cid.info(s) -> info | nil, err
--     info has these fields:
--       version     0 or 1
--       codec       codec name ("dag-pb", "raw", ...) or "0x..." when unknown
--       codec_code  codec number (0x70 for dag-pb)
--       hash        hash function name ("sha2-256", ...) or "0x..."
--       hash_code   hash function number (0x12 for sha2-256)
--       multibase   "base58btc", "base32", "base32upper", "base36",
--                   "base36upper", "base16" or "base16upper"
--     CIDv0 is recognised as a 46-character string starting with "Qm" (always
--     dag-pb, sha2-256, base58btc). CIDv1 is decoded from its multibase
--     prefix: b/B (base32), z (base58btc), k/K (base36), f/F (base16). The
--     string is not fully validated: only the leading varints are read.
--     Strings longer than 512 characters are refused.
-- cid.version(s) -> 0 | 1 | nil, err
-- cid.codec(s) -> name | nil, err
-- cid.CODECS, cid.HASHES
--     Number -> name tables, extendable by the policy.

local M = {}

M.CODECS = {
  [0x51] = "cbor",
  [0x55] = "raw",
  [0x70] = "dag-pb",
  [0x71] = "dag-cbor",
  [0x72] = "libp2p-key",
  [0x78] = "git-raw",
  [0x85] = "dag-jose",
  [0x0129] = "dag-json",
  [0x0200] = "json",
}

M.HASHES = {
  [0x00] = "identity",
  [0x11] = "sha1",
  [0x12] = "sha2-256",
  [0x13] = "sha2-512",
  [0x16] = "sha3-256",
  [0x1e] = "blake3",
  [0xb220] = "blake2b-256",
}

-- Identity-hashed CIDs can be long, but not this long; the radix decoding
-- below is quadratic in the length.
local MAX_INPUT = 512

local B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
local B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
local B32 = "abcdefghijklmnopqrstuvwxyz234567"
local B16 = "0123456789abcdef"

local function index(alphabet)
  local t = {}
  for i = 1, #alphabet do
    t[string.sub(alphabet, i, i)] = i - 1
  end
  return t
end

local I58, I36, I32, I16 = index(B58), index(B36), index(B32), index(B16)

-- Bit-oriented bases (32, 16): decode only the first `want` bytes.
local function decodeBits(s, idx, bits, want)
  local out, acc, nbits = {}, 0, 0
  for i = 1, #s do
    local v = idx[string.sub(s, i, i)]
    if v == nil then
      return nil, "invalid character " .. string.format("%q", string.sub(s, i, i))
    end
    acc = acc * 2 ^ bits + v
    nbits = nbits + bits
    if nbits >= 8 then
      nbits = nbits - 8
      local p = 2 ^ nbits
      out[#out + 1] = math.floor(acc / p)
      acc = acc % p
      if #out >= want then
        break
      end
    end
  end
  return out
end

-- Radix bases (58, 36) need the whole string: big-number conversion. To
-- keep it cheap in Lua the number is held in 24-bit limbs and the string is
-- consumed four digits at a time; every intermediate value stays below
-- 2^48, exact in a Lua number.
local LIMB = 16777216

local function decodeRadix(s, idx, base, zero)
  local limbs = {} -- little-endian
  local i, n = 1, #s
  while i <= n do
    local last = math.min(i + 3, n)
    local carry, mult = 0, 1
    for j = i, last do
      local v = idx[string.sub(s, j, j)]
      if v == nil then
        return nil, "invalid character " .. string.format("%q", string.sub(s, j, j))
      end
      carry = carry * base + v
      mult = mult * base
    end
    for j = 1, #limbs do
      carry = carry + limbs[j] * mult
      limbs[j] = carry % LIMB
      carry = math.floor(carry / LIMB)
    end
    while carry > 0 do
      limbs[#limbs + 1] = carry % LIMB
      carry = math.floor(carry / LIMB)
    end
    i = last + 1
  end
  local be = {}
  -- Leading zero digits stand for leading zero bytes.
  for j = 1, n do
    if string.sub(s, j, j) ~= zero then
      break
    end
    be[#be + 1] = 0
  end
  local started = false
  for j = #limbs, 1, -1 do
    local l = limbs[j]
    for _, b in ipairs({ math.floor(l / 65536), math.floor(l / 256) % 256, l % 256 }) do
      if b ~= 0 or started then
        started = true
        be[#be + 1] = b
      end
    end
  end
  return be
end

local function varint(bytes, pos)
  local v, mult = 0, 1
  for i = pos, math.min(#bytes, pos + 8) do
    local b = bytes[i]
    v = v + (b % 128) * mult
    if b < 128 then
      return v, i + 1
    end
    mult = mult * 128
  end
  return nil, pos
end

local function name(t, code)
  return t[code] or string.format("0x%x", code)
end

local BASES = {
  b = { "base32", function(r) return decodeBits(r, I32, 5, 16) end },
  B = { "base32upper", function(r) return decodeBits(string.lower(r), I32, 5, 16) end },
  f = { "base16", function(r) return decodeBits(r, I16, 4, 16) end },
  F = { "base16upper", function(r) return decodeBits(string.lower(r), I16, 4, 16) end },
  z = { "base58btc", function(r) return decodeRadix(r, I58, 58, "1") end },
  k = { "base36", function(r) return decodeRadix(r, I36, 36, "0") end },
  K = { "base36upper", function(r) return decodeRadix(string.lower(r), I36, 36, "0") end },
}

function M.info(s)
  if type(s) ~= "string" or s == "" then
    return nil, "cid must be a non-empty string"
  end
  if #s > MAX_INPUT then
    return nil, "cid longer than " .. MAX_INPUT .. " characters"
  end
  if #s == 46 and string.sub(s, 1, 2) == "Qm" then
    if string.find(s, "[^" .. B58 .. "]") then
      return nil, "invalid CIDv0 " .. string.format("%q", s) .. ": not base58btc"
    end
    return {
      version = 0, codec = "dag-pb", codec_code = 0x70,
      hash = "sha2-256", hash_code = 0x12, multibase = "base58btc",
    }
  end
  local base = BASES[string.sub(s, 1, 1)]
  if base == nil then
    return nil, "unsupported multibase prefix " .. string.format("%q", string.sub(s, 1, 1)) .. " in " .. string.format("%q", s)
  end
  local bytes, err = base[2](string.sub(s, 2))
  if bytes == nil then
    return nil, "invalid " .. base[1] .. " CID " .. string.format("%q", s) .. ": " .. err
  end
  local version, pos = varint(bytes, 1)
  if version ~= 1 then
    return nil, "invalid CID " .. string.format("%q", s) .. ": version " .. tostring(version) .. ", want 1"
  end
  local codec, hash
  codec, pos = varint(bytes, pos)
  if codec == nil then
    return nil, "invalid CID " .. string.format("%q", s) .. ": truncated codec"
  end
  hash, pos = varint(bytes, pos)
  if hash == nil then
    return nil, "invalid CID " .. string.format("%q", s) .. ": truncated multihash"
  end
  return {
    version = 1, codec = name(M.CODECS, codec), codec_code = codec,
    hash = name(M.HASHES, hash), hash_code = hash, multibase = base[1],
  }
end

function M.version(s)
  local info, err = M.info(s)
  if info == nil then
    return nil, err
  end
  return info.version
end

function M.codec(s)
  local info, err = M.info(s)
  if info == nil then
    return nil, err
  end
  return info.codec
end

return M
