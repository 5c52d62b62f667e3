"""The money stages as transactional loops on the real broker (no model, no ClickHouse):
two processes of accrue and of balances share the partitions; while attributions and a
refund stream in, each stage is killed with SIGKILL, one process of each is stopped for
good, and the survivors take over. Afterwards every ledger entry exists once, every
event's entries sum to its pool (refunded ones to zero), the holders' balances equal
the ledger, and each payout was requested once."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import orjson
import pytest

from tests.conftest import reset_platform
from tests.integration.checks import read_topic
from tributary import demo
from tributary.kafka import TopicReader, producer
from tributary.platform.procs import ManagedProcess
from tributary.topics import Topic

pytestmark = [pytest.mark.kafka, pytest.mark.chaos]

EVENTS = 3000
REFUNDED = {f"ev-{i:05d}" for i in range(0, EVENTS, 97)}
HOLDERS = [f"h-{i}" for i in range(12)]
ENV = {"TRIBUTARY_PAYOUT_THRESHOLD_MICROS": "2000000", "TRIBUTARY_PAYOUT_FEE_FIXED_MICROS": "0"}


def attribution(i: int) -> dict:
    a, b = HOLDERS[i % len(HOLDERS)], HOLDERS[(i * 7 + 3) % len(HOLDERS)]
    return {
        "schema_version": 1, "attribution_id": f"at-{i}", "event_id": f"ev-{i:05d}", "provider": "acme",
        "occurred_at": "2026-11-20T00:00:00Z",
        "contract": {"contract_id": "standard-2026", "version": 1, "royalty_rate_bps": 2000, "currency": "USD"},
        "pool_micros": 100_000 + i, "unattributed_ppm": 300_000, "evidence": {},
        "shares_ppm": [{"work_id": "w-a", "holder_id": a, "share_ppm": 400_000},
                       {"work_id": "w-b", "holder_id": b, "share_ppm": 300_000}],
    }


def refund(event_id: str) -> dict:
    return {"schema_version": 1, "kind": "refund", "correction_id": f"rf-{event_id}", "event_id": event_id,
            "provider": "acme", "reason": "chargeback", "occurred_at": "2026-11-20T01:00:00Z",
            "source": {"topic": "inference-events", "partition": 0, "offset": 0}}


def latest_state(cfg, topic: Topic) -> dict[str, dict]:
    latest: dict[str, dict | None] = {}
    reader = TopicReader(cfg.bootstrap_servers, topic.value)
    try:
        reader.read_to_end(lambda m: latest.__setitem__(m.key().decode(), orjson.loads(m.value())
                                                       if m.value() else None), timeout=30)
    finally:
        reader.close()
    return {k: v for k, v in latest.items() if v is not None}


@pytest.fixture(scope="module")
def money_run(platform_cfg):
    cfg = platform_cfg
    reset_platform(cfg)
    base = cfg.clickhouse_query_port
    procs = {f"{stage}-{n}": ManagedProcess(f"{stage}-{n}", cfg.run_dir, cfg.log_dir)
             for stage in ("accrue", "balances") for n in (0, 1)}

    def start(name: str) -> None:
        stage, n = name.rsplit("-", 1)
        port = base + 20 + list(procs).index(name)
        procs[name].start(demo.stage_argv(cfg, stage, ["--metrics-port", str(port), "--worker-id", n]), env=ENV)

    for name in procs:
        start(name)
    out = producer(cfg.bootstrap_servers)
    kills: list[str] = []
    try:
        def publish() -> None:
            for i in range(EVENTS):
                value = attribution(i)
                out.produce(Topic.ATTRIBUTIONS.value, key=value["event_id"].encode(), value=orjson.dumps(value))
                if value["event_id"] in REFUNDED:
                    out.produce(Topic.CORRECTIONS.value, key=value["event_id"].encode(),
                                value=orjson.dumps(refund(value["event_id"])))
                if i % 50 == 0:  # ~45 s of traffic: every kill and stop below lands mid-stream
                    out.poll(0)
                    time.sleep(0.75)
            out.flush(30)

        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(4)
        for name in ("accrue-0", "balances-1", "accrue-1"):  # SIGKILL: no shutdown, no final commit
            procs[name].kill()
            kills.append(name)
            time.sleep(1.5)
            start(name)
            time.sleep(1.5)
        procs["accrue-1"].stop(timeout=30)  # one process of each stage leaves for good
        procs["balances-0"].stop(timeout=30)
        assert publisher.is_alive(), "the traffic ended before the kills: slow the publisher down"
        publisher.join()
        deadline = time.monotonic() + 240
        from tributary.lag import LagReader

        lags = LagReader(cfg.bootstrap_servers)
        try:
            while time.monotonic() < deadline:
                pending = (lags.backlog("tributary-accrue", [Topic.ATTRIBUTIONS, Topic.CORRECTIONS])
                           + lags.backlog("tributary-balances", [Topic.ROYALTY_LEDGER]))
                if pending == 0:
                    break
                time.sleep(1)
        finally:
            lags.close()
        yield cfg, kills, procs
    finally:
        for proc in procs.values():
            proc.stop(timeout=20)


def test_every_entry_once_and_every_event_conserved(money_run):
    cfg, kills, _ = money_run
    assert kills == ["accrue-0", "balances-1", "accrue-1"]
    entries = read_topic(cfg, Topic.ROYALTY_LEDGER)
    ids = Counter(e["entry_id"] for e in entries)
    assert [i for i, n in ids.items() if n > 1] == []
    net: dict[str, int] = defaultdict(int)
    for e in entries:
        if e["event_id"]:
            net[e["event_id"]] += e["amount_micros"] * (1 if e["entry_type"] == "accrual" else -1)
    expected = {attribution(i)["event_id"]: (0 if attribution(i)["event_id"] in REFUNDED else 100_000 + i)
                for i in range(EVENTS)}
    assert dict(net) == expected


def test_balances_equal_the_ledger_and_each_payout_is_requested_once(money_run):
    cfg, _, _ = money_run
    entries = read_topic(cfg, Topic.ROYALTY_LEDGER)
    per_holder: dict[str, int] = defaultdict(int)
    for e in entries:
        if not e["holder_id"].startswith("escrow:") and e["entry_type"] in ("accrual", "accrual_reversal"):
            per_holder[e["holder_id"]] += e["amount_micros"] * (1 if e["entry_type"] == "accrual" else -1)
    state = latest_state(cfg, Topic.BALANCES_STATE)
    balances = {k.split(":", 2)[2]: v for k, v in state.items() if k.startswith("h:USD:")}
    assert {h: b["accrued_micros"] for h, b in balances.items()} == dict(per_holder)
    requests = read_topic(cfg, Topic.PAYOUT_REQUESTS)
    assert len({r["payout_id"] for r in requests}) == len(requests)  # none issued twice
    assert len(requests) >= len(HOLDERS)  # every holder crossed the threshold at least once
    for holder, balance in balances.items():
        mine = [r for r in requests if r["holder_id"] == holder]
        assert sum(r["amount_micros"] for r in mine) == balance["reserved_micros"]
        assert sorted(r["sequence"] for r in mine) == list(range(balance["payout_sequence"]))
        pending = {k for k in state if k.startswith("p:")}
        assert {f"p:{r['payout_id']}" for r in mine} <= pending  # no outcome yet: all still pending


def test_each_request_was_reserved_in_the_ledger_and_the_trial_balance_closes(money_run):
    """Balances posts each request's reservation (payable -> reserved) in the request's own
    transaction: through the kills, one reservation per request, and the reserved accounts
    equal the requests still awaiting an outcome (all of them: no Stripe sink runs here)."""
    from tributary import ledger

    cfg, _, _ = money_run
    entries = read_topic(cfg, Topic.ROYALTY_LEDGER)
    requests = read_topic(cfg, Topic.PAYOUT_REQUESTS)
    reservations = [e for e in entries if e["entry_type"] == "reservation"]
    assert sorted(e["payout_id"] for e in reservations) == sorted(r["payout_id"] for r in requests)
    for e in entries:
        ledger.check(e)
    pending: dict[tuple[str, str], int] = defaultdict(int)
    for r in requests:
        pending[(r["holder_id"], r["currency"])] += r["amount_micros"]
    assert ledger.problems(ledger.trial_balance(entries), pending) == []


def test_the_survivors_local_copies_are_caught_up_with_their_state_topic(money_run):
    """Every committed transaction records, in the local copy, how far into the state topic
    it reaches, so a restart reads only what it missed: after the survivors stop, each
    copy of theirs stands at the end of its state-topic partition (its last record, or
    the commit marker after it), not where it was last restored."""
    from confluent_kafka import Consumer, TopicPartition
    from rocksdict import AccessType, Options, Rdict

    from tributary.state import APPLIED

    cfg, _, procs = money_run
    survivors = {"accrue": ("accrue-0", Topic.ACCRUE_STATE), "balances": ("balances-1", Topic.BALANCES_STATE)}
    for name, _topic in survivors.values():
        procs[name].stop(timeout=30)
    watermarks = Consumer({"bootstrap.servers": cfg.bootstrap_servers, "group.id": "test-applied"})
    try:
        for stage, (name, topic) in survivors.items():
            folder = cfg.data_dir / "state" / f"instance-{name.rsplit('-', 1)[1]}" / stage
            copies = sorted(folder.iterdir(), key=lambda f: int(f.name))
            assert copies, f"no local state under {folder}"
            for copy in copies:
                db = Rdict(str(copy), Options(raw_mode=True), access_type=AccessType.read_only())
                try:
                    applied = int(bytes(db[APPLIED.encode()]))
                finally:
                    db.close()
                high = watermarks.get_watermark_offsets(TopicPartition(topic.value, int(copy.name)), timeout=10)[1]
                assert high - 1 <= applied <= high, (stage, copy.name, applied, high)
    finally:
        watermarks.close()
