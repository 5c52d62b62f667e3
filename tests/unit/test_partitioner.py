"""The SDK's own murmur2 is Kafka's: the same hash as aiokafka's (which Faust uses) on
many keys, and Kafka's own test vectors."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from tributary.partitioner import home_partition, murmur2


def test_murmur2_matches_aiokafka_on_many_keys():
    rng = random.Random(13)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"\xff\xfe\x00\x80"]
    keys += [f"evt-{rng.getrandbits(128):032x}".encode() for _ in range(2_000)]
    keys += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 70))) for _ in range(2_000)]
    keys += ["acme-ai:chatcmpl-é✓".encode()]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_home_partition_is_kafkas_default_partition():
    # Kafka's UtilsTest.testMurmur2 (signed Java ints); the partitioner masks the sign bit
    for key, java in [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
                      (b"a-little-bit-longer-string", -1486304829),
                      (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), (b"abc", 479470107)]:
        assert murmur2(key) == java & 0xFFFFFFFF
        for partitions in (1, 4, 12, 100):
            assert home_partition(key.decode(), partitions) == (java & 0x7FFFFFFF) % partitions
