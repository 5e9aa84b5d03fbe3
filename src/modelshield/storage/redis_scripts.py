"""Lua scripts of the Redis store: each is one atomic server-side operation.

Numbers are written with ``string.format('%d', …)``: Lua 5.1 would otherwise print
large integers (microsecond timestamps) in exponent notation and lose digits.
Quota counters are stored as ``"<value>|<expires_at µs or -1>"`` so that a window ends
at the caller's clock (the same clock every backend uses), not at Redis's TTL; the TTL
only collects garbage.
"""

_QUOTA = """
local function read_quota(key, now)
  local raw = redis.call('GET', key)
  if not raw then return 0 end
  local value, expires = string.match(raw, '^(%-?%d+)|(%-?%d+)$')
  if not value then return 0 end
  expires = tonumber(expires)
  if expires >= 0 and expires <= now then return 0 end
  return tonumber(value)
end
local function write_quota(key, value, expires, now)
  local raw = string.format('%d|%d', value, expires)
  if expires >= 0 then
    local ttl = math.ceil((expires - now) / 1000) + 1000
    redis.call('SET', key, raw, 'PX', string.format('%d', ttl))
  else
    redis.call('SET', key, raw)
  end
end
"""

# A BATCH of decisions in one script run. KEYS: every counter key the batch reads, each
# once. ARGV[1]: ONE binary string of little-endian signed 64-bit integers (Lua holds them
# as doubles: exact below 2^53, so µs timestamps are): per decision "now, charge (1/0),
# number of checks", then per check "kind (0 rate, 1 quota), key index, cost,
# interval|limit, burst|expires_at (-1: never), bonus key index (0: none)". Decisions run
# in order, each all or nothing (the script is atomic, and a later decision sees what an
# earlier one charged); counters are read with MGET and each changed key is written once
# at the end. Returns ONE flat array of integers: per decision allowed (1/0), then per
# check the values it read -- rate: stored TAT (0: none), 0; quota: used, bonus -- from
# which the client rebuilds the decision's details with limiter.decide() (the one rule),
# so the script computes only what admission needs. Mirrors limiter.decide().
CHECK_AND_CHARGE = """
local keys = #KEYS
local raw = {}
for first = 1, keys, 1000 do
  local last = math.min(keys, first + 999)
  local values = redis.call('MGET', unpack(KEYS, first, last))
  for j = first, last do raw[j] = values[j - first + 1] end
end
-- the numbers: little-endian int64s, unpacked CHUNK at a time (one C call per chunk;
-- parsing them from text cost more than all the deciding)
local packed = ARGV[1]
local n = #packed / 8
local a, got, at = {}, 0, 1
local CHUNK = 100
local full = '<' .. string.rep('i8', CHUNK)
while got < n do
  local size = math.min(CHUNK, n - got)
  local v = {struct.unpack(size == CHUNK and full or '<' .. string.rep('i8', size), packed, at)}
  for j = 1, size do a[got + j] = v[j] end
  at = v[size + 1]
  got = got + size
end
-- counters, parsed on first use: rate_v[i] = TAT (0: none); quota_v[i], quota_e[i] =
-- count and window end (-1: never). The hot path is inline: Lua function calls are dear.
local rate_v, quota_v, quota_e = {}, {}, {}
local find, sub, tonumber = string.find, string.sub, tonumber
local function parse_quota(j)
  local v, e = 0, -1
  local r = raw[j]
  if r then
    local bar = find(r, '|', 1, true)
    if bar then
      local x, y = tonumber(sub(r, 1, bar - 1)), tonumber(sub(r, bar + 1))
      if x and y then v, e = x, y end
    end
  end
  quota_v[j], quota_e[j] = v, e
  return v
end
local out, o = {}, 0
-- changed keys, written once each at the end in first-change order: kind (0 rate,
-- 1 quota) and TTL in ms (-1: none)
local order, changed, dirty_kind, dirty_ttl = {}, 0, {}, {}
local p = 1
while p <= n do
  local now, charge, count = a[p], a[p + 1], a[p + 2]
  p = p + 3
  local head, first = o + 1, p
  o = o + 1
  local ok = 1
  for _ = 1, count do
    local kind, i, cost, p1, p2 = a[p], a[p + 1], a[p + 2], a[p + 3], a[p + 4]
    if kind == 0 then
      local stored = rate_v[i]
      if stored == nil then
        stored = tonumber(raw[i] or '') or 0
        rate_v[i] = stored
      end
      local tat = stored
      if tat < now then tat = now end
      if tat + cost * p1 - p2 * p1 > now then ok = 0 end
      out[o + 1], out[o + 2] = stored, 0
    else
      local used = quota_v[i] or parse_quota(i)
      local e = quota_e[i]
      if e >= 0 and e <= now then used = 0 end
      local bonus = 0
      local j = a[p + 5]
      if j > 0 then
        bonus = quota_v[j] or parse_quota(j)
        e = quota_e[j]
        if e >= 0 and e <= now then bonus = 0 end
      end
      if used + cost > p1 + bonus then ok = 0 end
      out[o + 1], out[o + 2] = used, bonus
    end
    o = o + 2
    p = p + 6
  end
  out[head] = ok
  if ok == 1 and charge == 1 then
    local r = head + 1
    for q = first, p - 1, 6 do
      local kind, i, cost, p1, p2 = a[q], a[q + 1], a[q + 2], a[q + 3], a[q + 4]
      local ttl
      if kind == 0 then
        local tat = out[r]
        if tat < now then tat = now end
        local new_tat = tat + cost * p1
        rate_v[i] = new_tat
        ttl = math.ceil((new_tat - now) / 1000) + 1000
      elseif cost ~= 0 then
        quota_v[i], quota_e[i] = out[r] + cost, p2
        ttl = -1
        if p2 >= 0 then ttl = math.ceil((p2 - now) / 1000) + 1000 end
      end
      if ttl then
        if not dirty_kind[i] then
          changed = changed + 1
          order[changed] = i
        end
        if ttl ~= -1 and ttl < 1 then ttl = 1 end
        dirty_kind[i], dirty_ttl[i] = kind, ttl
      end
      r = r + 2
    end
  end
end
local format, call = string.format, redis.call
for c = 1, changed do
  local i = order[c]
  local text
  if dirty_kind[i] == 0 then
    text = format('%d', rate_v[i])
  else
    text = format('%d|%d', quota_v[i], quota_e[i])
  end
  local ttl = dirty_ttl[i]
  if ttl >= 0 then
    call('SET', KEYS[i], text, 'PX', format('%d', ttl))
  else
    call('SET', KEYS[i], text)
  end
end
return out
"""

# KEYS: counter keys. ARGV: now, then per key: kind, cost, interval (rate) | expires_at.
REFUND = (
    _QUOTA
    + """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 3
  local kind = ARGV[base]
  local cost = tonumber(ARGV[base + 1])
  local p = tonumber(ARGV[base + 2])
  if kind == 'r' and cost > 0 then
    local stored = tonumber(redis.call('GET', KEYS[i]) or '')
    if stored then
      local tat = stored - cost * p
      if tat > now then
        redis.call('SET', KEYS[i], string.format('%d', tat), 'PX',
                   string.format('%d', math.ceil((tat - now) / 1000) + 1000))
      else
        redis.call('DEL', KEYS[i])
      end
    end
  elseif cost > 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    local value = read_quota(KEYS[i], now) - cost
    if value < 0 then value = 0 end
    write_quota(KEYS[i], value, p, now)
  end
end
return 1
"""
)

# KEYS: quota counter. ARGV: amount, expires_at (-1: never), now. Returns the new value.
ADD_TO_COUNTER = (
    _QUOTA
    + """
local now = tonumber(ARGV[3])
local value = read_quota(KEYS[1], now) + tonumber(ARGV[1])
write_quota(KEYS[1], value, tonumber(ARGV[2]), now)
return value
"""
)

# KEYS: account hash, name index, key hash, accounts zset, account's key set.
# ARGV: account id, name, created_at, key id, then account fields, '--', key fields.
CREATE_ACCOUNT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'name' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'id' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'key' end
local i = 5
local account = {}
while ARGV[i] ~= '--' do table.insert(account, ARGV[i]); i = i + 1 end
local key = {}
for j = i + 1, #ARGV do table.insert(key, ARGV[j]) end
redis.call('HSET', KEYS[1], unpack(account))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], unpack(key))
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[4])
return 'ok'
"""

# KEYS: hash. ARGV: field, value pairs; value '' deletes the field. Nil when missing.
UPDATE_HASH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: key hash. ARGV: prefix. Returns {key fields, account fields} or nil.
FIND_CREDENTIAL = """
local key = redis.call('HGETALL', KEYS[1])
if #key == 0 then return nil end
local account_id = redis.call('HGET', KEYS[1], 'account_id')
local account = redis.call('HGETALL', ARGV[1] .. 'acct:' .. account_id)
if #account == 0 then return nil end
return {key, account}
"""

# KEYS: account hash, account's key set, new key hash. ARGV: prefix, now, new key id,
# new key fields. Returns revoked key ids, or nil when the account is missing.
ROTATE_KEY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'exists'} end
local revoked = {}
for _, key_id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local hash = ARGV[1] .. 'key:' .. key_id
  if redis.call('HSETNX', hash, 'revoked_at', ARGV[2]) == 1 then
    table.insert(revoked, key_id)
  end
end
local fields = {}
for i = 4, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[3])
return revoked
"""

# KEYS: key hash. ARGV: now. Idempotent revoke; returns the key's fields or nil.
REVOKE_KEY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: global stream, global count. ARGV: prefix, maxlen, ttl_s, then per event:
# event id, account id ('' none), json. Skips ids already seen (idempotent appends).
APPEND_EVENTS = """
local prefix = ARGV[1]
local maxlen = ARGV[2]
local written = 0
for i = 4, #ARGV, 3 do
  local event_id = ARGV[i]
  local account = ARGV[i + 1]
  if redis.call('SET', prefix .. 'evid:' .. event_id, '1', 'NX', 'EX', ARGV[3]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'event', ARGV[i + 2])
    redis.call('INCR', KEYS[2])
    local stream = prefix .. 'events:' .. account
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', ARGV[i + 2])
    redis.call('INCR', prefix .. 'events-count:' .. account)
    written = written + 1
  end
end
return written
"""

# KEYS: record key, the account's list, the global list. ARGV: json, cap. Stores the
# record once (idempotent by id) and lists it newest first; lists are capped.
APPEND_RECORD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  local cap = tonumber(ARGV[2])
  redis.call('LPUSH', KEYS[2], KEYS[1])
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
  redis.call('LPUSH', KEYS[3], KEYS[1])
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
end
return 1
"""

# KEYS: the action's key. ARGV: undone_at (as sent), undone_by. Returns the record's
# JSON (nil when missing); the first undo wins.
MARK_ACTION_UNDONE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local data = cjson.decode(raw)
if data['undone_at'] == nil or data['undone_at'] == cjson.null then
  data['undone_at'] = tonumber(ARGV[1])
  data['undone_by'] = ARGV[2]
  raw = cjson.encode(data)
  redis.call('SET', KEYS[1], raw)
end
return raw
"""
