-- auth-signature: every request signed JDCLOUD2-HMAC-SHA256 afresh (a new nonce,
-- the current date), as JD's SDK signers do, with the key pair the scenario's
-- ringway config lists (AKIDBENCH01 / s3cr3tBENCH). SHA-256 and HMAC are pure
-- LuaJIT (`bit`); the signing key is derived once per day, like the gateway's
-- cache. Signed headers: content-type;host;x-jdcloud-date;x-jdcloud-nonce; GET
-- /a/x (the scenario's secured route), no body. The signing runs on wrk's CPU, not the proxy's, so it does not count in
-- the proxy's CPU per request.

local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit
local char, byte, fmt, concat = string.char, string.byte, string.format, table.concat

local AK, SK = "AKIDBENCH01", "s3cr3tBENCH"
local REGION, SERVICE = "cn-north-1", "apigateway"
local PATH = "/a/x"
local EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local K = {
   0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
   0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
   0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
   0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
   0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
   0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
   0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
   0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end

local w = {}
local function block(h, s, off)
   for i = 1, 16 do
      local j = off + (i - 1) * 4
      local a, b, c, d = byte(s, j + 1, j + 4)
      w[i] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
   end
   for i = 17, 64 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
   end
   local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
   for i = 1, 64 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = tobit(hh + S1 + ch + K[i] + w[i])
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      local t2 = tobit(S0 + maj)
      hh, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
   end
   h[1], h[2], h[3], h[4] = tobit(h[1] + a), tobit(h[2] + b), tobit(h[3] + c), tobit(h[4] + d)
   h[5], h[6], h[7], h[8] = tobit(h[5] + e), tobit(h[6] + f), tobit(h[7] + g), tobit(h[8] + hh)
end

local function sha256(msg)
   local len = #msg
   local pad = 64 - (len + 9) % 64
   if pad == 64 then pad = 0 end
   local bits = len * 8
   msg = msg .. "\128" .. string.rep("\0", pad) .. char(0, 0, 0, 0,
      band(rshift(bits, 24), 255), band(rshift(bits, 16), 255), band(rshift(bits, 8), 255), band(bits, 255))
   local h = { tobit(0x6a09e667), tobit(0xbb67ae85), tobit(0x3c6ef372), tobit(0xa54ff53a),
               tobit(0x510e527f), tobit(0x9b05688c), tobit(0x1f83d9ab), tobit(0x5be0cd19) }
   for off = 0, #msg - 1, 64 do block(h, msg, off) end
   local out = {}
   for i = 1, 8 do
      local v = h[i]
      out[i] = char(band(rshift(v, 24), 255), band(rshift(v, 16), 255), band(rshift(v, 8), 255), band(v, 255))
   end
   return concat(out)
end

local function hex(s)
   return (s:gsub(".", function(c) return fmt("%02x", byte(c)) end))
end

local function hmac(key, msg)
   if #key > 64 then key = sha256(key) end
   key = key .. string.rep("\0", 64 - #key)
   local ipad, opad = {}, {}
   for i = 1, 64 do
      local k = byte(key, i)
      ipad[i], opad[i] = char(bxor(k, 0x36)), char(bxor(k, 0x5c))
   end
   return sha256(concat(opad) .. sha256(concat(ipad) .. msg))
end

local host, key, key_day, date, last_sec = nil, nil, nil, nil, -1
local seq, prefix = 0, nil

function init(args)
   host = wrk.host .. ":" .. wrk.port
   prefix = fmt("%08x", math.random(0, 0x7fffffff)) .. "-" .. tostring(os.time())
end

function request()
   local now = os.time()
   if now ~= last_sec then
      last_sec = now
      date = os.date("!%Y%m%dT%H%M%SZ", now)
   end
   local day = date:sub(1, 8)
   if day ~= key_day then
      key_day = day
      key = hmac(hmac(hmac(hmac("JDCLOUD2" .. SK, day), REGION), SERVICE), "jdcloud2_request")
   end
   seq = seq + 1
   local nonce = prefix .. "-" .. seq
   local canonical = "GET\n" .. PATH .. "\n\ncontent-type:application/json\nhost:" .. host
      .. "\nx-jdcloud-date:" .. date .. "\nx-jdcloud-nonce:" .. nonce
      .. "\n\ncontent-type;host;x-jdcloud-date;x-jdcloud-nonce\n" .. EMPTY
   local scope = day .. "/" .. REGION .. "/" .. SERVICE .. "/jdcloud2_request"
   local to_sign = "JDCLOUD2-HMAC-SHA256\n" .. date .. "\n" .. scope .. "\n" .. hex(sha256(canonical))
   local sig = hex(hmac(key, to_sign))
   return wrk.format("GET", PATH, {
      ["Host"] = host,
      ["Content-Type"] = "application/json",
      ["x-jdcloud-date"] = date,
      ["x-jdcloud-nonce"] = nonce,
      ["Authorization"] = "JDCLOUD2-HMAC-SHA256 Credential=" .. AK .. "/" .. scope
         .. ", SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce, Signature=" .. sig,
   })
end
