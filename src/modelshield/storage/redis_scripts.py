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

# KEYS: every counter key a decision reads. ARGV: now, charge (1/0), then ONE string
# holding every check as "kind,key index,cost,interval|limit,burst|expires_at (-1: never),
# bonus key index (0: none)" joined by ";". Returns ONE string: allowed, then per check
# allowed, limit, remaining, reset_us (-1: never), retry_us (-1: never), used, joined by
# ",". One argument in and one string out keep the client's encoding and parsing cheap
# (they, not Redis, dominate a decision's cost). Mirrors limiter.decide().
CHECK_AND_CHARGE = (
    _QUOTA
    + """
local now = tonumber(ARGV[1])
local charge = ARGV[2] == '1'
local out = {1}
local writes = {}
for kind, key_index, cost, p1, p2, bonus_index in
    string.gmatch(ARGV[3], '(%a),(%d+),(%-?%d+),(%-?%d+),(%-?%d+),(%d+)') do
  local key = KEYS[tonumber(key_index)]
  cost = tonumber(cost)
  p1 = tonumber(p1)
  p2 = tonumber(p2)
  bonus_index = tonumber(bonus_index)
  if kind == 'r' then
    local stored = tonumber(redis.call('GET', key) or '')
    local tat = now
    if stored and stored > now then tat = stored end
    local new_tat = tat + cost * p1
    local allow_at = new_tat - p2 * p1
    local capacity = now + p2 * p1
    if allow_at <= now then
      table.insert(writes, {'r', key, new_tat, new_tat - now})
      local remaining = math.floor((capacity - new_tat) / p1)
      for _, v in ipairs({1, p2, remaining, new_tat - now, -1, 0}) do table.insert(out, v) end
    else
      out[1] = 0
      local remaining = math.floor((capacity - tat) / p1)
      if remaining < 0 then remaining = 0 end
      local retry = allow_at - now
      if cost > p2 then retry = -1 end
      for _, v in ipairs({0, p2, remaining, tat - now, retry, 0}) do table.insert(out, v) end
    end
  else
    local used = read_quota(key, now)
    local bonus = 0
    if bonus_index > 0 then bonus = read_quota(KEYS[bonus_index], now) end
    local limit = p1 + bonus
    local reset = -1
    if p2 >= 0 then reset = p2 - now end
    if used + cost <= limit then
      local after = used + cost
      if cost > 0 then table.insert(writes, {'q', key, after, p2}) end
      local remaining = limit - after
      if remaining < 0 then remaining = 0 end
      for _, v in ipairs({1, limit, remaining, reset, -1, after}) do table.insert(out, v) end
    else
      out[1] = 0
      local remaining = limit - used
      if remaining < 0 then remaining = 0 end
      for _, v in ipairs({0, limit, remaining, reset, reset, used}) do table.insert(out, v) end
    end
  end
end
if out[1] == 1 and charge then
  for _, w in ipairs(writes) do
    if w[1] == 'r' then
      local ttl_ms = math.ceil(w[4] / 1000) + 1000
      redis.call('SET', w[2], string.format('%d', w[3]), 'PX', string.format('%d', ttl_ms))
    else
      write_quota(w[2], w[3], w[4], now)
    end
  end
end
for i = 1, #out do out[i] = string.format('%d', out[i]) end
return table.concat(out, ',')
"""
)

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
