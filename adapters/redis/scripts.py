"""Lua scripts: each one is a single atomic step on keys of one hash slot."""

from __future__ import annotations

# Apply one transition: compare-and-set on seq, fence on epoch, then every side effect
# (indexes, history, new work, timers, the ack of the message that caused it) at once.
# A transition is therefore applied exactly once, and never without its follow-up work.
# A commit that leaves the instance finished announces it on Keyspace.finished_channel, so
# a client waiting for the result blocks on a subscription instead of polling.
# Ops 's' / 'n' / 'd' add (always / only if absent) or remove the instance in the sorted
# set KEYS[n]: the start-time and finish-time indexes.
# Op 'h' sets one more field of the instance's hash, 'H' several at once (a count, then
# name/value pairs: one HSET where a new instance's four fields took four).
# Ops 'c' / 'f' / 'e' record what the transition did (observing.observation_ops): add to a
# counter, add seconds to a sum, append to an event stream (KEYS[n], trimmed to ~ARGV).
COMMIT = """
local stored = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
if ARGV[1] == '' then
  if stored[1] then return -2 end
else
  if stored[1] ~= ARGV[1] then return 0 end
end
if stored[2] and tonumber(stored[2]) > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'epoch', ARGV[3], 'snap', ARGV[4],
  'status', ARGV[5], 'held', ARGV[8], 'updated_at', ARGV[9])
if KEYS[3] ~= KEYS[4] then redis.call('SREM', KEYS[3], ARGV[6]) end
redis.call('SADD', KEYS[4], ARGV[6])
redis.call('SADD', KEYS[5], ARGV[6])
local count = tonumber(ARGV[10])
-- the entries in order, up to 1000 per RPUSH (the same list as one RPUSH each; Lua's
-- unpack cannot take a big map's thousands at once)
for first = 11, 10 + count, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, first, math.min(first + 999, 10 + count)))
end
if count > 0 then redis.call('LTRIM', KEYS[2], -tonumber(ARGV[7]), -1) end
local i = 11 + count
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'x' then
    redis.call('XADD', KEYS[6 + tonumber(ARGV[i + 1])], '*', 'm', ARGV[i + 2])
    i = i + 3
  elseif op == 't' then
    redis.call('ZADD', KEYS[9], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'r' then
    redis.call('ZREM', KEYS[9], ARGV[i + 1])
    i = i + 2
  elseif op == 'h' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'H' then
    local last = i + 1 + 2 * tonumber(ARGV[i + 1])
    redis.call('HSET', KEYS[1], unpack(ARGV, i + 2, last))
    i = last + 1
  elseif op == 'a' then
    redis.call('XACK', KEYS[6 + tonumber(ARGV[i + 1])], 'workers', ARGV[i + 2])
    i = i + 3
  elseif op == 's' then
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[6])
    i = i + 3
  elseif op == 'n' then
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], 'NX', ARGV[i + 2], ARGV[6])
    i = i + 3
  elseif op == 'd' then
    redis.call('ZREM', KEYS[tonumber(ARGV[i + 1])], ARGV[6])
    i = i + 2
  elseif op == 'c' then
    redis.call('HINCRBY', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'f' then
    redis.call('HINCRBYFLOAT', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'e' then
    redis.call('XADD', KEYS[tonumber(ARGV[i + 1])], 'MAXLEN', '~', ARGV[i + 2], '*',
      'e', ARGV[i + 3])
    i = i + 4
  else
    return redis.error_reply('rustyflower: unknown commit op ' .. tostring(op))
  end
end
-- while the site replicates (KEYS[12]: Keyspace.lifeboat_switch) note the instance in
-- KEYS[13] (lifeboat_changed) with the time of its oldest change not yet collected: one
-- entry per instance, so a replication backlog is bounded by instances, not transitions
if redis.call('EXISTS', KEYS[12]) == 1 then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[13], 'NX', now[1] * 1000 + math.floor(now[2] / 1000), ARGV[6])
end
if ARGV[5] ~= 'running' then redis.call('PUBLISH', KEYS[1] .. ':finished', ARGV[5]) end
return 1
"""

# Read the next message by priority: high, then normal, then low (non-blocking).
READ_BY_PRIORITY = """
for i = 1, #KEYS do
  local found = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
    'STREAMS', KEYS[i], '>')
  if found then return {i - 1, found[1][2]} end
end
return false
"""

# Take due timers with a lease: they are re-scored to the lease's end, not removed, so a
# poller that dies before applying them lets another poller fire them after the lease.
TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member) end
return due
"""

# Put deferred work (held back by a concurrency or rate limit) back on its stream.
RELEASE_DEFERRED = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local stream = tonumber(string.sub(member, 1, 1))
  redis.call('XADD', KEYS[2 + stream], '*', 'm', string.sub(member, 3))
end
return #due
"""

# Defer a message: park it in the deferred set and acknowledge it on its stream.
DEFER = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('XACK', KEYS[2], 'workers', ARGV[3])
return 1
"""

# Route a message to the stream of its activity (read only by workers that have it):
# add it there (its consumer group created first if need be) and acknowledge it here.
ROUTE = """
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

# A counting semaphore shared by every worker; holders expire unless renewed.
ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
  return 1
end
return 0
"""

# Token bucket: returns 0 when a token was taken, else the milliseconds to wait.
TAKE_TOKEN = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], 3600000)
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 3600000)
return math.ceil((1 - tokens) * 1000 / rate)
"""

# Fence an instance for a new owner (failover): raise its epoch without touching its state,
# note when the owner changed (ARGV[4]) and write the history entry of the fence (ARGV[5]: a
# JSON object, given the stored seq here) to KEYS[4], trimmed to ARGV[6] entries: the entry
# is written exactly when the fence is. A replicating site notes the change (KEYS[2],
# KEYS[3] as in COMMIT): the replica's owner and epoch follow.
FENCE = """
local stored = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not stored[1] then return -2 end
if tonumber(stored[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'owner', ARGV[2], 'owner_at', ARGV[4])
local note = cjson.decode(ARGV[5])
note['seq'] = tonumber(stored[2])
redis.call('RPUSH', KEYS[4], cjson.encode(note))
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[6]), -1)
if redis.call('EXISTS', KEYS[2]) == 1 then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[3], 'NX', now[1] * 1000 + math.floor(now[2] / 1000), ARGV[3])
end
return 1
"""

# Drop a timer of an instance this runner does not own (fenced for a cloud) or that is gone.
# Checked and removed in one step: a failback that re-adds the timer meanwhile keeps it.
DROP_ORPHAN_TIMER = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if not owner or owner == ARGV[2] then return 0 end
end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# Trim a work stream below the oldest entry some consumer group still needs: its oldest
# pending (delivered, unacknowledged) entry, else the one after its last delivered entry.
# Nothing unread or unacknowledged by any group is ever trimmed. Returns the entries removed.
TRIM_ACKNOWLEDGED = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  local pending = redis.call('XPENDING', KEYS[1], name)
  local keep
  if tonumber(pending[1]) > 0 then
    keep = pending[2]
  else
    local ms, seq = string.match(last, '^(%d+)-(%d+)$')
    keep = ms .. '-' .. tostring(tonumber(seq) + 1)
  end
  if floor == nil or before(keep, floor) then floor = keep end
end
if floor == nil then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
"""

# Delete a finished instance (snapshot, history, step log, index entries) if it is still
# what the caller saw: finished with that status, finished no later than ARGV[3] (ms).
PURGE_FINISHED = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[2] then return 0 end
local finished = redis.call('ZSCORE', KEYS[6], ARGV[1])
if not finished or tonumber(finished) > tonumber(ARGV[3]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[7])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"""

# Take or renew the scheduler's leadership lease.
LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
"""

# Compare-and-set one field of a hash: write ARGV[3] ('' deletes the field) only if the
# field still holds ARGV[2] ('' = absent). Returns 1 when written, 0 when it had changed.
HASH_FIELD_CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == false then current = '' end
if current ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""

# Give up the scheduler's lease, but only if this holder still has it.
LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# Replication (adapters.redis.lifeboat_feed), one shard at a time.
# Move changed instance ids into every target's backlog (KEYS[2..]), keeping the oldest time.
COLLECT_CHANGES = """
local moved = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #moved, 2 do
  for k = 2, #KEYS do redis.call('ZADD', KEYS[k], 'NX', moved[i + 1], moved[i]) end
  redis.call('ZREM', KEYS[1], moved[i])
end
return #moved / 2
"""

# Take shipped instances off a target's backlog (KEYS[1]) if the instance (KEYS[2 + n]) is
# still what was shipped: ARGV[1] is when they were read (ms), then (id, seq, epoch,
# absent) quadruples, seq '' for "it was gone", absent '1' when the target holds no
# replica of it now (it leaves KEYS[2], the target's present set). One that changed since
# stays, to be shipped again, scored no older than the read (what changed after it is
# newer). Returns {id, score, ...} of those removed.
SHIPPED = """
local removed = {}
for n = 1, (#ARGV - 1) / 4 do
  local id, seq, epoch, absent = ARGV[4 * n - 2], ARGV[4 * n - 1], ARGV[4 * n], ARGV[4 * n + 1]
  if absent == '1' then redis.call('SREM', KEYS[2], id) end
  local stored = redis.call('HMGET', KEYS[2 + n], 'seq', 'epoch')
  local same
  if seq == '' then same = not stored[1] else same = stored[1] == seq and stored[2] == epoch end
  if same then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score then
      redis.call('ZREM', KEYS[1], id)
      removed[#removed + 1] = id
      removed[#removed + 1] = score
    end
  else
    redis.call('ZADD', KEYS[1], 'XX', 'GT', ARGV[1], id)
  end
end
return removed
"""
