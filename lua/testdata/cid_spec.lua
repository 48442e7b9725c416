-- Checks of the cid module on fixed strings; cid_test.go compares it with
-- go-cid on generated CIDs.
local cid = require("cid")

local v0 = cid.info("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
assert(v0.version == 0 and v0.codec == "dag-pb" and v0.codec_code == 0x70 and v0.hash == "sha2-256")
assert(v0.multibase == "base58btc")

local v1 = cid.info("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
assert(v1.version == 1 and v1.codec == "dag-pb" and v1.hash == "sha2-256" and v1.multibase == "base32")

local raw = cid.info("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
assert(raw.codec == "raw" and raw.codec_code == 0x55, raw.codec)

assert(cid.version("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG") == 0)
assert(cid.codec("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku") == "raw")

for _, bad in ipairs({ "", "hello", "Qm", "bafy!!", "x123", "b", "zzz0OIl" }) do
  local info, err = cid.info(bad)
  assert(info == nil and type(err) == "string", "accepted " .. bad)
end
local _, err = cid.info(42)
assert(err == "cid must be a non-empty string")

-- Unknown codecs are rendered in hex and the tables can be extended.
cid.CODECS[0x55] = nil
assert(cid.codec("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku") == "0x55")
cid.CODECS[0x55] = "raw"

local long, lerr = cid.info("b" .. string.rep("a", 600))
assert(long == nil and string.find(lerr, "longer than 512", 1, true))
