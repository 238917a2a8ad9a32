-- SHA-256 and HMAC-SHA256 with a precomputed midstate, in LuaJIT (the `bit` library).
-- Inlined by make_lua.py into the generated wrk script (wrk links LuaJIT). Why: the ingest
-- scenario sends a DIFFERENT order in every request, and Shopify signs the whole body, so each
-- request needs its own HMAC. The body is a constant prefix plus a short varying tail, so the
-- inner hash of the prefix is computed once (the "midstate") and each request only hashes the
-- last one or two 64-byte blocks plus one block of the outer hash: a few microseconds.
-- Self-checked against Python's hmac at start-up (see make_lua.py's test vector).
local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit
local byte, char, sub, rep, floor = string.byte, string.char, string.sub, string.rep, math.floor

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
local H0 = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
for i = 1, 8 do H0[i] = tobit(H0[i]) end
local W = {}

local function compress(H, s, off)  -- one 64-byte block of s starting at 1-based offset off
  for j = 0, 15 do
    local a, b, c, d = byte(s, off + j * 4, off + j * 4 + 3)
    W[j] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
  end
  for j = 16, 63 do
    local w15, w2 = W[j - 15], W[j - 2]
    local s0 = bxor(ror(w15, 7), ror(w15, 18), rshift(w15, 3))
    local s1 = bxor(ror(w2, 17), ror(w2, 19), rshift(w2, 10))
    W[j] = tobit(W[j - 16] + s0 + W[j - 7] + s1)
  end
  local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for j = 0, 63 do
    local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
    local ch = bxor(band(e, f), band(bnot(e), g))
    local t1 = h + S1 + ch + K[j + 1] + W[j]
    local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
    local maj = bxor(band(a, b), band(a, c), band(b, c))
    h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
  end
  H[1] = tobit(H[1] + a); H[2] = tobit(H[2] + b); H[3] = tobit(H[3] + c); H[4] = tobit(H[4] + d)
  H[5] = tobit(H[5] + e); H[6] = tobit(H[6] + f); H[7] = tobit(H[7] + g); H[8] = tobit(H[8] + h)
end

local function be32(x)
  return char(band(rshift(x, 24), 255), band(rshift(x, 16), 255), band(rshift(x, 8), 255), band(x, 255))
end

-- A running hash: state H, bytes hashed so far n (a multiple of 64), not-yet-hashed rest.
local function new_state() return { H = { unpack(H0) }, n = 0, rest = "" } end

local function update(st, s)
  s = st.rest .. s
  local full = #s - #s % 64
  for off = 1, full, 64 do compress(st.H, s, off) end
  st.n = st.n + full
  st.rest = sub(s, full + 1)
end

local function copy(st) return { H = { unpack(st.H) }, n = st.n, rest = st.rest } end

local function digest(st)  -- finishes (and consumes) st; 32 raw bytes
  local rest = st.rest
  local bits = (st.n + #rest) * 8
  local zeros = (55 - #rest) % 64
  local tail = rest .. "\128" .. rep("\0", zeros) .. be32(floor(bits / 4294967296)) .. be32(bits % 4294967296)
  for off = 1, #tail, 64 do compress(st.H, tail, off) end
  local H = st.H
  return be32(H[1]) .. be32(H[2]) .. be32(H[3]) .. be32(H[4]) .. be32(H[5]) .. be32(H[6]) .. be32(H[7]) .. be32(H[8])
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64T = {}
for i = 1, 64 do B64T[i - 1] = sub(B64, i, i) end
local function base64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = B64T[floor(v / 262144) % 64] .. B64T[floor(v / 4096) % 64]
      .. (b and B64T[floor(v / 64) % 64] or "=") .. (c and B64T[v % 64] or "=")
  end
  return table.concat(out)
end

-- HMAC-SHA256 keyed midstates: inner state after key^ipad and `prefix`, outer after key^opad.
local function hmac_prefix(key, prefix)
  if #key > 64 then local st = new_state(); update(st, key); key = digest(st) end
  key = key .. rep("\0", 64 - #key)
  local ipad, opad = {}, {}
  for i = 1, 64 do
    local k = byte(key, i)
    ipad[i] = char(bxor(k, 0x36)); opad[i] = char(bxor(k, 0x5c))
  end
  local inner, outer = new_state(), new_state()
  update(inner, table.concat(ipad)); update(inner, prefix)
  update(outer, table.concat(opad))
  return inner, outer
end

-- base64(HMAC-SHA256(key, prefix .. tail)) from the midstates of hmac_prefix(key, prefix).
local function hmac_tail_b64(inner, outer, tail)
  local i = copy(inner)
  update(i, tail)
  local o = copy(outer)
  update(o, digest(i))
  return base64(digest(o))
end
