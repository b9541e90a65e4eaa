"""The on-premises runtime: instances in Redis (or Valkey), work on Streams, timers in a ZSET."""
