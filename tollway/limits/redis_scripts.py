"""The Lua scripts of the Redis limiter (limits/redis.py says what the keys hold and why).

Each script is one atomic step in Redis. Money is integer micro-dollars; where an amount may
pass 2**53 (Lua's numbers are doubles) it is added with ``HINCRBY`` from its decimal string
and compared as a string, never through a Lua number.
"""

from __future__ import annotations

# Helpers shared by the scripts. A bucket is {level, stamp}; a missing key is full at now.
_COMMON = """
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

local function load(key, capacity, now)
  local s = redis.call('HMGET', key, 'level', 'stamp')
  if not s[1] then return {level = capacity, stamp = now} end
  return {level = tonumber(s[1]), stamp = tonumber(s[2])}
end

-- Capped even when no time passed: a limit lowered since the bucket was saved applies now.
local function refill(b, capacity, now)
  if now > b.stamp then
    b.level = b.level + (now - b.stamp) * (capacity / 60.0)
    b.stamp = now
  end
  b.level = math.min(capacity, b.level)
  return b.level
end

local function save(key, b, capacity, margin)
  redis.call('HSET', key, 'level', num(b.level), 'stamp', num(b.stamp))
  local ttl = margin
  if capacity > 0 and b.level < capacity then
    ttl = ttl + math.ceil((capacity - b.level) / (capacity / 60.0) * 1000)
  end
  redis.call('PEXPIRE', key, int(ttl))
end

-- Drop a budget's expired reservations and take them off its reserved total.
local function purge(spend, holds, now_s)
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now_s)
  if #gone == 0 then return end
  local total = 0
  for _, hold in ipairs(gone) do
    total = total + (tonumber(redis.call('HGET', spend, hold)) or 0)
    redis.call('HDEL', spend, hold)
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', now_s)
  if total ~= 0 then redis.call('HINCRBY', spend, 'reserved', int(-total)) end
end

-- The epoch of a seeded account ('0' for one seeded before epochs existed).
local function epoch_of(value) return value or '0' end
"""

# KEYS: per scope i: rpm, tpm, conc (3i-2 .. 3i); then per budget j: spend, holds.
# ARGV: now, hold id, hold_s, tokens, reserve, nscopes, nbudgets, margin ms;
#   then per scope: rpm, tpm, max_concurrent ('' when unlimited);
#   then per budget: limit, the epoch this replica last saw ('' when none).
# Returns {2, {budget indexes}} when a budget's account is not seeded, or is of an epoch this
#   replica has not synced with (Redis lost it since): nothing is taken, the client syncs
#   them (SYNC) and asks again;
# {0, index, retry_after or false, remaining micros or false, spents}: refused by scope
#   (index <= nscopes) or budget (index - nscopes);
# or {1, {requests, tokens per scope ...}, least remaining micros or false, spents}.
# spents: spent, epoch, floor of each budget checked (spent - floor: the epoch's own part).
ADMIT = (
    _COMMON
    + """
local now_s = ARGV[1]
local now = tonumber(now_s)
local hold = ARGV[2]
local expiry = now + tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local nscopes = tonumber(ARGV[6])
local nbudgets = tonumber(ARGV[7])
local margin = tonumber(ARGV[8])
local base = 3 * nscopes
local argb = 8 + 3 * nscopes

local buckets = {}
local function bucket(key, capacity)
  local b = buckets[key]
  if not b then
    b = load(key, capacity, now)
    buckets[key] = b
  end
  return b
end

for i = 1, nscopes do
  local rpm = tonumber(ARGV[6 + 3 * i])
  local tpm = tonumber(ARGV[7 + 3 * i])
  local cap = tonumber(ARGV[8 + 3 * i])
  if cap then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 * i], '-inf', now_s)
    if redis.call('ZCARD', KEYS[3 * i]) >= cap then return {0, i, false, false, {}} end
  end
  if rpm then
    local amount = math.min(1, rpm)
    local missing = amount - refill(bucket(KEYS[3 * i - 2], rpm), rpm, now)
    if missing > 0 then return {0, i, num(missing / (rpm / 60.0)), false, {}} end
  end
  if tpm then
    local amount = math.min(tokens, tpm)
    local missing = amount - refill(bucket(KEYS[3 * i - 1], tpm), tpm, now)
    if missing > 0 then return {0, i, num(missing / (tpm / 60.0)), false, {}} end
  end
end

local spents = {}
local stale = {}
local least = false
for j = 1, nbudgets do
  local spend, holds = KEYS[base + 2 * j - 1], KEYS[base + 2 * j]
  purge(spend, holds, now_s)
  local state = redis.call('HMGET', spend, 'spent', 'reserved', 'epoch', 'floor')
  local seen = ARGV[argb + 2 * j]
  if not state[1] or (seen ~= '' and seen ~= epoch_of(state[3])) then
    stale[#stale + 1] = j
  elseif #stale == 0 then
    spents[3 * j - 2] = state[1]
    spents[3 * j - 1] = epoch_of(state[3])
    spents[3 * j] = state[4] or '0'
    local limit = tonumber(ARGV[argb + 2 * j - 1])
    local left = limit - tonumber(state[1]) - (tonumber(state[2]) or 0)
    if reserve > left then return {0, nscopes + j, false, int(math.max(0, left)), spents} end
    left = left - reserve
    if not least or left < least then least = left end
  end
end
if #stale > 0 then return {2, stale} end

local remaining = {}
for i = 1, nscopes do
  local rpm = tonumber(ARGV[6 + 3 * i])
  local tpm = tonumber(ARGV[7 + 3 * i])
  local requests, left_tokens = false, false
  if tonumber(ARGV[8 + 3 * i]) then
    local conc = KEYS[3 * i]
    redis.call('ZADD', conc, num(expiry), hold)
    local ttl = math.ceil(tonumber(ARGV[3]) * 1000) + margin
    if redis.call('PTTL', conc) < ttl then redis.call('PEXPIRE', conc, int(ttl)) end
  end
  if rpm then
    local b = bucket(KEYS[3 * i - 2], rpm)
    b.level = b.level - 1
    save(KEYS[3 * i - 2], b, rpm, margin)
    requests = num(math.max(0, b.level))
  end
  if tpm then
    local b = bucket(KEYS[3 * i - 1], tpm)
    b.level = b.level - tokens
    save(KEYS[3 * i - 1], b, tpm, margin)
    left_tokens = num(math.max(0, b.level))
  end
  remaining[2 * i - 1] = requests
  remaining[2 * i] = left_tokens
end
if reserve > 0 then
  for j = 1, nbudgets do
    local spend, holds = KEYS[base + 2 * j - 1], KEYS[base + 2 * j]
    redis.call('HINCRBY', spend, hold, ARGV[5])
    redis.call('HINCRBY', spend, 'reserved', ARGV[5])
    redis.call('ZADD', holds, num(expiry), hold)
  end
end
if least then least = int(least) end
return {1, remaining, least, spents}
"""
)

# KEYS: per scope i: tpm, conc (2i-1, 2i); then per budget j: spend, holds; last: done.
# ARGV: now, hold id, extra tokens (actual - claimed), actual micros, nscopes, nbudgets,
#   margin ms; then per scope: tpm ('' when unlimited).
# Returns {1, then spent, epoch and floor per budget}, all false for an account not seeded
# (Redis lost it): the cost is kept in its ``carry`` until it is seeded; or {0} when this
# hold was settled already (a retried settlement whose first reply was lost must not count
# twice).
SETTLE = (
    _COMMON
    + """
if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', 86400) then
  return {0}
end
local now_s = ARGV[1]
local now = tonumber(now_s)
local hold = ARGV[2]
local extra = tonumber(ARGV[3])
local nscopes = tonumber(ARGV[5])
local nbudgets = tonumber(ARGV[6])
local margin = tonumber(ARGV[7])

for i = 1, nscopes do
  redis.call('ZREM', KEYS[2 * i], hold)
  local tpm = tonumber(ARGV[7 + i])
  if tpm and extra ~= 0 then
    local b = load(KEYS[2 * i - 1], tpm, now)
    if extra > 0 then
      b.level = b.level - extra
    else
      b.level = math.min(tpm, b.level - extra)
    end
    save(KEYS[2 * i - 1], b, tpm, margin)
  end
end

local after = {1}
for j = 1, nbudgets do
  local spend, holds = KEYS[2 * nscopes + 2 * j - 1], KEYS[2 * nscopes + 2 * j]
  purge(spend, holds, now_s)
  local reserved = redis.call('HGET', spend, hold)
  if reserved then
    redis.call('HDEL', spend, hold)
    redis.call('HINCRBY', spend, 'reserved', int(-tonumber(reserved)))
    redis.call('ZREM', holds, hold)
  end
  if redis.call('HEXISTS', spend, 'spent') == 1 then
    redis.call('HINCRBY', spend, 'spent', ARGV[4])
    local state = redis.call('HMGET', spend, 'spent', 'epoch', 'floor')
    after[3 * j - 1] = state[1]
    after[3 * j] = epoch_of(state[2])
    after[3 * j + 1] = state[3] or '0'
  else
    redis.call('HINCRBY', spend, 'carry', ARGV[4])
    after[3 * j - 1] = false
    after[3 * j] = false
    after[3 * j + 1] = false
  end
end
return after
"""
)

# KEYS: per account: spend, holds. ARGV: now.
# Returns per account {spent, reserved, epoch, false, floor, base, earlier}, or {false,
# reserved, false, carry or false} for one not seeded (see SYNC for base and earlier).
ACCOUNTS = (
    _COMMON
    + """
local out = {}
for j = 1, #KEYS / 2 do
  purge(KEYS[2 * j - 1], KEYS[2 * j], ARGV[1])
  local state = redis.call(
    'HMGET', KEYS[2 * j - 1], 'spent', 'reserved', 'epoch', 'carry', 'floor', 'base', 'earlier')
  if state[1] then
    local floor = state[5] or '0'
    out[j] = {state[1], state[2] or '0', epoch_of(state[3]), false, floor,
              state[6] or floor, state[7] or ''}
  else
    out[j] = {false, state[2] or '0', false, state[4] or false}
  end
end
return out
"""
)

# Bring accounts up to date after Redis lost them (a restart without persistence, FLUSHALL,
# failover to an empty replica), or start new ones; run by every replica that finds one not
# seeded, of an epoch it has not synced with, or whose floor it cannot account for, and at
# every reconcile.
#
# An account's spend is a grow-only counter (``SpendTally``, store/records.py): its ``base``
# (spend from before any epoch) plus one part per epoch, what was settled in that epoch's
# hash on top of its floor. The hash of epoch E keeps the parts of the epochs before it
# (``base``, and ``earlier``: "id=micros id=micros ..."); ``floor`` is their sum and ``spent``
# the floor plus E's own part (its carry and settlements). A replica gives what it knows of
# every part (its tally, and the most it saw of its own epoch's part); each raises the part
# it names to the larger of the two and moves ``floor`` and ``spent`` by the difference, so
# what many replicas know, given late, twice or in any order, is counted once. E's own part
# is Redis' to count: a part given for E is ignored. An account not seeded starts a new
# epoch from what the replica knows and the store's persisted tally (only then: the store
# lags behind Redis), plus the ``carry`` settled while it was not seeded. When the replica
# was synced with another epoch, its open reservations (not settled yet, not expired, no
# settlement marked done) are restored, so admissions see them again.
#
# A hash written before tallies existed has no ``base``: its floor was the most a replica
# knew of the spend before its epoch, so it is the base.
#
# KEYS: per account: spend, holds; then the done key of every hold named in ARGV, in order.
# ARGV: now, a new epoch id, n accounts; per account: the epoch this replica is synced with
#   ('' when none), the persisted tally and the replica's (each: base, the number of parts,
#   and per part: epoch id, micros), then the number of its open holds, and per hold: id,
#   reserved micros, expiry.
# Returns {spent, reserved, epoch, floor, base, earlier} per account.
SYNC = (
    _COMMON
    + """
local function greater(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- Add (sign '') or take ('-') decimal micros to a field, exactly (HINCRBY parses them).
local function move(key, field, sign, micros)
  if micros ~= '0' then redis.call('HINCRBY', key, field, sign .. micros) end
end

local a = 4
local function tally()
  local t = {base = ARGV[a], ids = {}, parts = {}}
  local nparts = tonumber(ARGV[a + 1])
  for p = 1, nparts do
    local id = ARGV[a + 2 * p]
    t.ids[p] = id
    t.parts[id] = ARGV[a + 2 * p + 1]
  end
  a = a + 2 + 2 * nparts
  return t
end

local function parse(base, earlier)
  local t = {base = base, ids = {}, parts = {}}
  for id, micros in string.gmatch(earlier or '', '([^%s=]+)=(%d+)') do
    t.ids[#t.ids + 1] = id
    t.parts[id] = micros
  end
  return t
end

-- Raise the parts of ``into`` to those of ``from`` (but ``skip``'s); ``floor`` and ``spent``
-- of ``spend`` move by what they gained, when ``spend`` is given.
local function raise(into, from, skip, spend)
  local gains = {}
  if greater(from.base, into.base) then
    gains[#gains + 1] = {from.base, into.base}
    into.base = from.base
  end
  for _, id in ipairs(from.ids) do
    local old = into.parts[id]
    if id ~= skip and (not old or greater(from.parts[id], old)) then
      gains[#gains + 1] = {from.parts[id], old or '0'}
      if not old then into.ids[#into.ids + 1] = id end
      into.parts[id] = from.parts[id]
    end
  end
  if spend then
    for _, gain in ipairs(gains) do
      for _, field in ipairs({'floor', 'spent'}) do
        move(spend, field, '', gain[1])
        move(spend, field, '-', gain[2])
      end
    end
  end
end

local function store(spend, t)
  local parts = {}
  for p, id in ipairs(t.ids) do parts[p] = id .. '=' .. t.parts[id] end
  redis.call('HSET', spend, 'base', t.base, 'earlier', table.concat(parts, ' '))
end

local now = tonumber(ARGV[1])
local fresh = ARGV[2]
local n = tonumber(ARGV[3])
local d = 2 * n + 1
local out = {}
for j = 1, n do
  local spend, holds = KEYS[2 * j - 1], KEYS[2 * j]
  local synced = ARGV[a]
  a = a + 1
  local persisted = tally()
  local given = tally()
  purge(spend, holds, ARGV[1])
  local state = redis.call('HMGET', spend, 'spent', 'epoch', 'floor', 'base', 'earlier')
  local restore = false
  if not state[1] then
    local known = parse('0', '')
    raise(known, persisted, fresh, false)
    raise(known, given, fresh, false)
    redis.call('HSET', spend, 'spent', '0', 'floor', '0', 'epoch', fresh)
    move(spend, 'floor', '', known.base)
    for _, id in ipairs(known.ids) do move(spend, 'floor', '', known.parts[id]) end
    redis.call('HSET', spend, 'spent', redis.call('HGET', spend, 'floor'))
    store(spend, known)
    local carry = redis.call('HGET', spend, 'carry')
    if carry then
      redis.call('HINCRBY', spend, 'spent', carry)
      redis.call('HDEL', spend, 'carry')
    end
    restore = true
  else
    local epoch = epoch_of(state[2])
    local floor = state[3] or '0'
    local known = parse(state[4] or floor, state[5])
    if not state[3] then redis.call('HSET', spend, 'floor', floor) end
    raise(known, given, epoch, spend)
    store(spend, known)
    restore = synced ~= '' and synced ~= epoch
  end
  local nholds = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, nholds do
    local hold, micros, expiry = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    a = a + 3
    if restore and tonumber(expiry) > now
        and redis.call('EXISTS', KEYS[d]) == 0
        and redis.call('HEXISTS', spend, hold) == 0 then
      redis.call('HSET', spend, hold, micros)
      redis.call('HINCRBY', spend, 'reserved', micros)
      redis.call('ZADD', holds, expiry, hold)
    end
    d = d + 1
  end
  state = redis.call('HMGET', spend, 'spent', 'reserved', 'epoch', 'floor', 'base', 'earlier')
  out[j] = {state[1], state[2] or '0', epoch_of(state[3]), state[4], state[5], state[6]}
end
return out
"""
)

# Drop the reservations a sync gave back to holds settled while it ran (their settlement
# may have run first, and will not run again). KEYS: per hold: spend, holds of its account.
# ARGV: the hold ids.
RELEASE = """
for j = 1, #ARGV do
  local spend, holds, hold = KEYS[2 * j - 1], KEYS[2 * j], ARGV[j]
  local reserved = redis.call('HGET', spend, hold)
  if reserved then
    redis.call('HDEL', spend, hold)
    redis.call('HINCRBY', spend, 'reserved', '-' .. reserved)
    redis.call('ZREM', holds, hold)
  end
end
return 0
"""

# Keep the holds of requests still in flight (limits/redis.py: "Holds and their expiry"): a
# hold's expiry is for a replica that died mid-request; one that lives renews its requests'
# holds before they expire, however long they run. Only a hold still there is renewed: one
# settled, or expired and purged already, is not brought back.
# KEYS: per hold: its concurrency sets, then its budgets' holds.
# ARGV: per hold: id, new expiry, its number of concurrency sets and of budgets, and the
#   concurrency sets' time to live (ms) from now.
# Returns the number of holds renewed.
RENEW = """
local k, a, renewed = 1, 1, 0
while a <= #ARGV do
  local hold, expiry = ARGV[a], ARGV[a + 1]
  local nconc, nbudgets, ttl = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4]
  a = a + 5
  local found = false
  for _ = 1, nconc do
    local conc = KEYS[k]
    k = k + 1
    if redis.call('ZSCORE', conc, hold) then
      redis.call('ZADD', conc, expiry, hold)
      if redis.call('PTTL', conc) < tonumber(ttl) then redis.call('PEXPIRE', conc, ttl) end
      found = true
    end
  end
  for _ = 1, nbudgets do
    local holds = KEYS[k]
    k = k + 1
    if redis.call('ZSCORE', holds, hold) then
      redis.call('ZADD', holds, expiry, hold)
      found = true
    end
  end
  if found then renewed = renewed + 1 end
end
return renewed
"""
