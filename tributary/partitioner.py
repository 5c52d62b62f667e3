"""Which partition a key belongs to: Kafka's default partitioner for keyed records
(the Java client's ``Utils.murmur2``, librdkafka's ``murmur2_random``, aiokafka and
Faust), so the producer SDK can group events by the partition Kafka would pick for
them without depending on aiokafka."""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit int (the Java client's
    signed int, masked)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length // 4
    for k in struct.unpack_from(f"<{whole}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[whole * 4:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def home_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives records keyed ``key``:
    ``toPositive(murmur2(key)) % partitions``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
