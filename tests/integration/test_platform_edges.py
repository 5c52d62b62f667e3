"""The local platform's edges on the real services: what the launcher starts listens on
loopback only (so a second platform can run beside it), `tributary status` counts the
lag on every topic the streams group consumes, the catalog's size limit is one the real
producer and broker accept, and `holders policy` works without the Stripe client."""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tributary import kafka
from tributary.catalog import MAX_RECORD_BYTES
from tributary.config import PlatformConfig
from tributary.kafka import TopicReader
from tributary.lag import LagReader
from tributary.platform import kafka as kafka_launcher
from tributary.platform import stripe_mock
from tributary.topics import Topic

pytestmark = [pytest.mark.kafka, pytest.mark.stripe]

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def _address(hex_addr: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_addr)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # four little-endian 32-bit words
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by ``pid`` or its process group."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # same process group
            pids.append(int(stat.parent.name))
    inodes = set()
    for p in set(pids):
        for fd in Path(f"/proc/{p}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == LISTEN and cols[9] in inodes:
                addr, port = cols[1].split(":")
                out.append((_address(addr, v6), int(port, 16)))
    return sorted(out)


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc (Linux)")
def test_everything_the_platform_starts_listens_on_loopback_only(platform_cfg):
    for name, proc in (("kafka", kafka_launcher.process(platform_cfg)),
                       ("stripe-mock", stripe_mock.process(platform_cfg))):
        pid = proc.pid()
        assert pid is not None, f"{name} is not running"
        sockets = listening(pid)
        assert sockets, f"{name} listens on nothing?"
        assert all(is_loopback(addr) for addr, _ in sockets), f"{name} listens beyond loopback: {sockets}"
    assert ("127.0.0.1", platform_cfg.stripe_port) in listening(stripe_mock.process(platform_cfg).pid() or 0)
    assert 12112 not in [port for _, port in listening(stripe_mock.process(platform_cfg).pid() or 0)]


def test_a_second_platform_starts_its_own_stripe_mock_beside_the_first(platform_cfg, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    second = dataclasses.replace(platform_cfg, data_dir=tmp_path, stripe_port=port)
    try:
        stripe_mock.start(second, log=lambda m: None)  # failed before: *:12112 was the first's
        assert stripe_mock.answers(second) and stripe_mock.answers(platform_cfg)
    finally:
        stripe_mock.stop(second)


def test_status_counts_lag_on_corrections(platform_cfg):
    # refunds and review decisions wait on corrections for the accrue stage (no accrue runs
    # here, so each record adds to its lag). (This runs seconds after the broker started:
    # reading committed offsets then crashed the process through the admin client, librdkafka#5040.)
    reader = LagReader(platform_cfg.bootstrap_servers)
    try:
        before = reader.stage_lags()["accrue"]
        producer = kafka.producer(platform_cfg.bootstrap_servers)
        for n in range(3):
            producer.produce(Topic.CORRECTIONS.value, key=f"lag-probe-{n}".encode(), value=b"{}")
        assert producer.flush(30) == 0
        assert reader.stage_lags()["accrue"] - before == 3
    finally:
        reader.close()


def test_a_catalog_record_at_the_size_limit_is_accepted_by_the_real_broker(platform_cfg):
    # a scratch topic with catalog-updates' settings (no size override), so no indexer ever reads it
    topic = f"size-limit-probe-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": platform_cfg.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    key = b"w-at-the-limit"
    value = secrets.token_hex(MAX_RECORD_BYTES)[: MAX_RECORD_BYTES - len(key)].encode()  # incompressible
    producer = kafka.producer(platform_cfg.bootstrap_servers)  # the producer catalog.publish uses
    delivered: list[object] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0 and delivered == [None]
    admin.delete_topics([topic])


def test_holders_policy_works_without_the_stripe_client(platform_cfg: PlatformConfig):
    holder = f"h-nostripe-{uuid.uuid4().hex[:6]}"
    script = ("import sys; sys.modules['stripe'] = None  # as if the sinks extra were not installed\n"
              "from tributary.cli import main; sys.exit(main(sys.argv[1:]))")
    args = ["--data-dir", str(platform_cfg.data_dir), "--kafka-port", str(platform_cfg.kafka_port),
            "holders", "policy", "--id", holder, "--min-payout", "5"]
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"payout policy for {holder}: min_payout_micros=5000000" in out.stdout
    found = []
    reader = TopicReader(platform_cfg.bootstrap_servers, Topic.HOLDER_POLICIES.value)
    reader.read_to_end(lambda m: found.append(orjson.loads(m.value())) if m.key() == holder.encode() else None)
    reader.close()
    assert [(p["holder_id"], p["min_payout_micros"]) for p in found] == [(holder, 5_000_000)]
    # onboarding does need Stripe: it says so in one line
    add = subprocess.run([sys.executable, "-c", script, *args[:4], "holders", "add", "--id", holder,
                          "--name", "N", "--email", "n@example.com"], capture_output=True, text=True, timeout=120)
    assert add.returncode == 1 and "Traceback" not in add.stderr
    assert add.stderr.strip() == "error: onboarding a holder needs the Stripe client: pip install 'tributary[sinks]'"
