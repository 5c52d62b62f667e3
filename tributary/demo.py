"""``tributary demo``: the whole product on one machine, end to end.

Resets its own data directory (``<data-dir>/demo``), brings the platform up, starts
every stage as its own process, registers the sample catalog, onboards each holder
as a Connect account on stripe-mock, publishes inference events, waits until the
pipeline has settled, prints a summary and stops everything it started.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from producers.events import InferenceRefund
from producers.sdk import EventProducer
from schemas import examples
from sinks.clickhouse.schema import SIGNED
from tributary import catalog as catalog_ops
from tributary.config import PipelineConfig, PlatformConfig
from tributary.kafka import TopicReader
from tributary.lag import LagReader
from tributary.money import format_micros, payable
from tributary.platform import local
from tributary.platform.procs import PlatformError
from tributary.query import QueryError, query, scalar
from tributary.sample import load_catalog, plan_events
from tributary.topics import Topic
from tributary.topology import stages


def stage_argv(cfg: PlatformConfig, stage: str, extra: list[str] | None = None) -> list[str]:
    return [
        sys.executable, "-m", "tributary.cli",
        "--data-dir", str(cfg.data_dir), "--kafka-port", str(cfg.kafka_port),
        "--kafka-controller-port", str(cfg.kafka_controller_port), "--stripe-port", str(cfg.stripe_port),
        "--clickhouse-query-port", str(cfg.clickhouse_query_port), "--portal-port", str(cfg.portal_port),
        "run", stage, *(extra or []),
    ]


def stage_extras(cfg: PlatformConfig, stage: str) -> list[str]:
    """Each stage's own port (:func:`local.stage_port`)."""
    port = str(local.stage_port(cfg, stage))
    return {
        "streams": ["--web-port", port],
        "indexer": ["--metrics-port", port],
        "attribution": ["--metrics-port", port, "--worker-id", "0"],
        "sink-clickhouse": [],
        "sink-stripe": ["--metrics-port", port],
        "accrue": ["--metrics-port", port, "--worker-id", "0"],
        "balances": ["--metrics-port", port, "--worker-id", "0"],
        "portal": [],
    }[stage]


def start_stage(cfg: PlatformConfig, stage: str, env: dict[str, str] | None = None) -> int:
    return local.stage_process(cfg, stage).start(stage_argv(cfg, stage, stage_extras(cfg, stage)), env=env)


def start_stages(cfg: PlatformConfig, log: Any = print, env: dict[str, str] | None = None) -> None:
    for stage in local.STAGES:
        proc = local.stage_process(cfg, stage)
        if proc.running():
            log(f"  {stage} already running (pid {proc.pid()})")
            continue
        start_stage(cfg, stage, env)
        log(f"  started {stage} (pid {proc.pid()}, log {proc.log_file})")


def check_stages(cfg: PlatformConfig) -> None:
    for stage in local.STAGES:
        proc = local.stage_process(cfg, stage)
        if not proc.running():
            raise PlatformError(f"stage {stage} exited; last lines of {proc.log_file}:\n{proc.tail(25)}")


def wait_for(cfg: PlatformConfig, what: str, probe: Any, timeout: float, log: Any = print) -> Any:
    """Poll ``probe`` (returns (done, progress text, value)) until done; show progress."""
    deadline = time.monotonic() + timeout
    last_print = 0.0
    while True:
        check_stages(cfg)
        try:
            done, progress, value = probe()
        except QueryError as exc:
            done, progress, value = False, f"(waiting for ClickHouse: {exc})", None
        now = time.monotonic()
        if done:
            log(f"  {what}: {progress}")
            return value
        if now - last_print > 3:
            log(f"  {what}: {progress}")
            last_print = now
        if now > deadline:
            raise PlatformError(f"timed out after {timeout:.0f}s waiting for {what} ({progress}); "
                                f"see logs under {cfg.log_dir}")
        time.sleep(1)


def refund_plan(planned: list[Any]) -> list[InferenceRefund]:
    """Refund every 50th event (deterministic), as a provider would after a chargeback."""
    return [InferenceRefund(event_id=p.event.event_id, provider=p.event.provider, reason="customer chargeback",
                            refund_id=f"refund-{p.event.event_id}")
            for p in planned[::50]]


def register_catalog(cfg: PlatformConfig, pipeline: PipelineConfig, log: Any = print) -> dict[str, Any]:
    sample = load_catalog()
    records, readiness = [], []
    accounts = catalog_ops.connect_accounts(pipeline.stripe_api_key, cfg.stripe_api_base,
                                            pipeline.onboarding_return_url)
    for holder in sample["holders"]:
        onboarded = catalog_ops.onboard_holder(holder, accounts)
        records.append(catalog_ops.holder_record(holder, onboarded.account))
        readiness.append(catalog_ops.readiness_record(holder["holder_id"], onboarded.account, onboarded.ready,
                                                      onboarded.reason))
        log(f"  onboarded {holder['holder_id']} as Express account {onboarded.account}; onboarding link "
            f"{onboarded.onboarding_url}")
    records += [catalog_ops.work_record(w) for w in sample["works"]]
    catalog_ops.publish(cfg.bootstrap_servers, records)
    catalog_ops.publish_readiness(cfg.bootstrap_servers, readiness)
    policies = [catalog_ops.policy_record(h["holder_id"], **h["policy"]) for h in sample["holders"] if h.get("policy")]
    catalog_ops.publish_policies(cfg.bootstrap_servers, policies)
    for policy in policies:
        log(f"  payout policy for {policy['holder_id']}: "
            + ", ".join(f"{k}={v}" for k, v in policy.items() if k not in ("schema_version", "holder_id")))
    log(f"  registered {len(sample['works'])} works from {len(sample['holders'])} holders")
    return sample


def indexed_works(cfg: PlatformConfig, reader: TopicReader, seen: set[str]) -> int:
    import json

    def note(msg: Any) -> None:
        if msg.value() is not None:
            seen.add(json.loads(msg.value())["work_id"])

    reader.read_to_end(note)
    return len(seen)


def register_and_index(cfg: PlatformConfig, pipeline: PipelineConfig, timeout: float,
                       log: Any = print) -> dict[str, Any]:
    """Register the sample catalog and wait until the indexer has embedded every work."""
    sample = register_catalog(cfg, pipeline, log=log)
    reader = TopicReader(cfg.bootstrap_servers, Topic.CATALOG_CHUNKS.value)
    seen: set[str] = set()
    n_works = len(sample["works"])
    try:
        wait_for(cfg, "catalog indexed",
                 lambda: (indexed_works(cfg, reader, seen) >= n_works,
                          f"{len(seen)}/{n_works} works embedded", None), timeout, log=log)
    finally:
        reader.close()
    return sample


SETTLE_SQL = {
    "priced": "SELECT count() FROM priced_events FINAL",
    "attributed": "SELECT count() FROM attributions FINAL",
    "accrued": "SELECT uniqExact(event_id) FROM ledger_entries FINAL WHERE entry_type = 'accrual'",
    "dead_lettered": "SELECT count() FROM dead_letters FINAL",
    "refunded": "SELECT uniqExact(event_id) FROM ledger_entries FINAL WHERE entry_type = 'accrual_reversal'",
    "payouts_requested": "SELECT count() FROM payout_requests FINAL",
    "payouts_done": "SELECT count() FROM payout_results FINAL",
    "payout_entries": "SELECT count() FROM ledger_entries FINAL WHERE entry_type IN ('payout', 'payout_reversal')",
}
# the stages whose input must be fully consumed (topology registry)
SETTLE_LAGS = {stage.group: list(stage.inputs) for name, stage in stages().items()
               if name in ("streams", "accrue", "balances", "sink-stripe", "sink-clickhouse")}


def settle_probe(cfg: PlatformConfig, valid: int, invalid: int, refunds: int = 0) -> Any:
    """Settled: every event is priced, attributed and in the ledger, every refund is
    reversed, the balances and both sinks have consumed everything, every payout
    request has an outcome, and nothing changed between three readings."""
    history: list[dict[str, int]] = []
    lags = LagReader(cfg.bootstrap_servers)

    def probe() -> tuple[bool, str, dict[str, int]]:
        counts = {name: int(scalar(cfg, sql) or 0) for name, sql in SETTLE_SQL.items()}
        counts["lag"] = sum(lags.backlog(group, topics) for group, topics in SETTLE_LAGS.items())
        history.append(counts)
        done = (
            counts["priced"] == valid and counts["attributed"] == valid and counts["accrued"] == valid
            and counts["dead_lettered"] == invalid and counts["refunded"] == refunds and counts["lag"] == 0
            and counts["payouts_requested"] == counts["payouts_done"] == counts["payout_entries"]
            and len(history) >= 3 and history[-3] == counts
        )
        progress = (f"priced {counts['priced']}/{valid}  attributed {counts['attributed']}/{valid}  "
                    f"in ledger {counts['accrued']}/{valid}  refunded {counts['refunded']}/{refunds}  "
                    f"dead-lettered {counts['dead_lettered']}/{invalid}  "
                    f"payouts {counts['payouts_done']}/{counts['payouts_requested']}  backlog {counts['lag']}")
        return done, progress, counts

    return probe


# the demo's payout thresholds in yen: low enough that its few yen-billed events pay out
DEMO_ENV = {"TRIBUTARY_PAYOUT_CURRENCIES": "JPY=20000000/1000000"}


def money_by_currency(cfg: PlatformConfig) -> dict[str, dict[str, int]]:
    """Per currency: pool, refunded, credited to holders, escrow, paid out; never summed
    across currencies."""
    figures: dict[str, dict[str, int]] = {}

    def put(name: str, rows: list[list[Any]]) -> None:
        for currency, amount in rows:
            figures.setdefault(str(currency), dict.fromkeys(
                ("pool", "refunded", "credited", "escrow", "paid", "transfers"), 0))[name] = int(amount or 0)

    put("pool", query(cfg, "SELECT currency, sum(pool_micros) FROM priced_events FINAL GROUP BY currency")[1])
    put("refunded", query(cfg, "SELECT currency, sum(pool_micros) FROM priced_events FINAL WHERE event_id IN "
                               "(SELECT event_id FROM corrections FINAL WHERE kind = 'refund') GROUP BY currency")[1])
    put("credited", query(cfg, f"SELECT currency, sum({SIGNED}) FROM ledger_entries FINAL "
                               "WHERE entry_type IN ('accrual', 'accrual_reversal') "
                               "AND holder_id NOT LIKE 'escrow:%' GROUP BY currency")[1])
    put("escrow", query(cfg, f"SELECT currency, sum({SIGNED}) FROM ledger_entries FINAL "
                             "WHERE holder_id = 'escrow:unattributed' GROUP BY currency")[1])
    put("paid", query(cfg, "SELECT currency, sum(amount_micros) FROM ledger_entries FINAL "
                           "WHERE entry_type = 'payout' GROUP BY currency")[1])
    put("transfers", query(cfg, "SELECT currency, count() FROM ledger_entries FINAL "
                                "WHERE entry_type = 'payout' GROUP BY currency")[1])
    return figures


def summary(cfg: PlatformConfig, sample: dict[str, Any], published: int, invalid: int) -> bool:
    """Print the summary; returns False if the books do not balance."""
    money = money_by_currency(cfg)
    _, holders = query(cfg, """
        SELECT h.holder_id, h.name, h.stripe_account, ifNull(b.currency, ''),
               ifNull(b.accrued_micros, 0), ifNull(b.paid_micros, 0), ifNull(b.payouts, 0)
        FROM holders AS h FINAL LEFT JOIN holder_balances AS b ON h.holder_id = b.holder_id
        ORDER BY h.holder_id, b.currency SETTINGS join_use_nulls = 0""")
    _, transfers = query(cfg, "SELECT holder_id, currency, groupArray(transfer_id) FROM "
                              "(SELECT holder_id, currency, transfer_id FROM ledger_entries FINAL "
                              "WHERE entry_type = 'payout' ORDER BY created_at) GROUP BY holder_id, currency")
    _, dlq = query(cfg, "SELECT error_code, count() FROM dead_letters FINAL GROUP BY error_code ORDER BY error_code")
    _, kinds = query(cfg, """
        SELECT JSONExtractString(p.metadata, 'demo_kind') AS kind, count() AS events,
               countIf(a.attributed_ppm > 0) AS with_attribution,
               countIf(length(JSONExtract(p.metadata, 'planted', 'Array(String)')) > 0 AND
                       hasAll(a.works, JSONExtract(p.metadata, 'planted', 'Array(String)'))) AS sources_found,
               countIf(NOT hasAll(JSONExtract(p.metadata, 'planted', 'Array(String)'), a.works)) AS wrong_work
        FROM priced_events AS p FINAL INNER JOIN attributions AS a FINAL ON p.event_id = a.event_id
        GROUP BY kind ORDER BY kind""")
    by_holder = {(h, c): ids for h, c, ids in transfers}
    balanced = all(m["credited"] + m["escrow"] == m["pool"] - m["refunded"] for m in money.values())
    payable_only = all(payable(m["paid"], c) == m["paid"] for c, m in money.items())
    print("\n================ tributary demo: summary ================")
    print(f"inference events published : {published} valid + {invalid} invalid")
    print("money, per currency (never added across currencies):")
    for currency, m in sorted(money.items()):
        net = m["pool"] - m["refunded"]
        exact = m["credited"] + m["escrow"] == net
        print(f"  {currency}: royalty pool {format_micros(m['pool'], currency)}, refunded "
              f"{format_micros(m['refunded'], currency)}")
        print(f"       attributed to holders {format_micros(m['credited'], currency)}"
              + (f" ({m['credited'] / net:.1%} of the net pool)" if net else "")
              + f", unattributed (escrow) {format_micros(m['escrow'], currency)}")
        print(f"       conservation: credits + escrow {'==' if exact else '!='} pool - refunds "
              f"({'exact to the micro' if exact else 'MISMATCH'}); paid out via Stripe Connect "
              f"{format_micros(m['paid'], currency)} in {m['transfers']} transfers")
    print("\nattribution by output kind (the demo plants its sources, so they can be checked):")
    print(f"  {'kind':<10} {'events':>6} {'attributed':>10} {'all planted works found':>24} "
          f"{'attributed to a work not planted':>33}")
    for kind, n, attributed, found, wrong in kinds:
        found_text = f"{found}" if kind != "unrelated" else "-"
        print(f"  {kind:<10} {n:>6} {attributed:>10} {found_text:>24} {wrong:>33}")
    print("\nper holder:")
    print(f"  {'holder':<10} {'account':<22} {'accrued':>22} {'paid':>22} {'unpaid':>22}  transfers")
    for holder_id, _name, account, currency, accrued, paid, payouts in holders:
        ids = by_holder.get((holder_id, currency), [])
        shown = ", ".join(ids[:2]) + (f" (+{len(ids) - 2} more)" if len(ids) > 2 else "")
        cur = currency or "USD"
        print(f"  {holder_id:<10} {account:<22} {format_micros(int(accrued), cur):>22} "
              f"{format_micros(int(paid), cur):>22} {format_micros(int(accrued) - int(paid), cur):>22}  "
              f"{payouts}: {shown}")
    print("\ndead-lettered (reason codes):")
    for code, n in dlq:
        print(f"  {code:<28} {n}")
    exe = Path(sys.executable).parent / "tributary"
    cli = os.path.relpath(exe) if exe.exists() else "tributary"
    print("\nquery it yourself (ClickHouse engine, embedded):")
    base = f"  {cli} --data-dir {cfg.data_dir}"
    print(f"{base} report earnings --by holder,model")
    print(f"{base} statement h-austen --currency USD  # accruals, refunds, payouts, remainder (--format csv|html)")
    print(f"{base} report payouts --holder h-austen   # then: explain <payout_id>, down to the matched passages")
    print(f"{base} review list --limit 5              # probable (paraphrase) attributions to accept or reject")
    print(f"{base} sql \"SELECT reason, count() FROM dead_letters FINAL GROUP BY reason\"")
    print(f"{base} trial-balance                    # every ledger account per currency: do the books close?")
    print("  views: accrual_lines, holder_earnings_daily, unattributed_escrow, attribution_coverage, "
          "holder_balances, account_balances (every column: docs/tables.md)")
    print("==========================================================\n")
    return balanced and payable_only


def run(base: PlatformConfig, pipeline: PipelineConfig, events: int, keep_running: bool,
        timeout: float) -> int:
    cfg = replace(base, data_dir=base.data_dir / "demo")
    print(f"[1/6] resetting the demo data directory {cfg.data_dir}")
    local.down(cfg, wipe=True, log=lambda m: print(f"  {m}"))
    ok = False
    try:
        print("[2/6] starting the platform (Kafka broker, stripe-mock, ClickHouse engine)")
        local.up(cfg, log=lambda m: print(f"  {m}"))
        print("[3/6] starting the pipeline stages, one process each, and the holder portal")
        start_stages(cfg, env=DEMO_ENV)
        start_stage(cfg, local.PORTAL, DEMO_ENV)
        print("[4/6] registering the sample catalog and onboarding holders")
        sample = register_and_index(cfg, pipeline, timeout)
        print(f"[5/6] publishing {events} inference events (+ the invalid examples from schemas/, "
              "+ refunds of 2% of the events)")
        planned = plan_events(sample, events)
        invalid = [raw for name, raw in examples(Topic.INFERENCE_EVENTS.value) if name.startswith("invalid-")]
        refunds = refund_plan(planned)
        with EventProducer(cfg.bootstrap_servers) as producer:
            for i, item in enumerate(planned):
                producer.emit(item.event)
                if i == len(planned) // 2:
                    for raw in invalid:
                        producer.emit_raw(None, raw)
            for refund in refunds:
                producer.refund(refund)
            left = producer.flush(60)
        del producer
        gc.collect()  # release librdkafka handles now, not when the broker is already down
        if left:
            raise PlatformError(f"{left} events were not acknowledged by Kafka")
        print("[6/6] waiting for the pipeline to settle")
        wait_for(cfg, "pipeline", settle_probe(cfg, events, len(invalid), len(refunds)), timeout)
        ok = summary(cfg, sample, events, len(invalid))
        portal_links(cfg, sample)
    finally:
        if keep_running:
            print(f"everything is still running; stop it with: tributary --data-dir {cfg.data_dir} down")
        elif ok and local.stage_process(cfg, local.PORTAL).running():
            print("stopping the stages and the platform; the holder portal stays up, reading the ledger read-only")
            for stage in local.STAGES:
                local.stage_process(cfg, stage).stop(timeout=20)
            _platform_down(cfg)
            print(f"  the portal is at http://127.0.0.1:{cfg.portal_port} (filing a dispute needs the platform: "
                  f"`tributary demo --keep-running`); stop it with: tributary --data-dir {cfg.data_dir} down")
        else:
            print("stopping the stages and the platform")
            local.down(cfg, log=lambda m: print(f"  {m}"))
    return 0 if ok else 1


def _platform_down(cfg: PlatformConfig) -> None:
    from tributary.platform import kafka, stripe_mock

    stripe_mock.stop(cfg)
    kafka.stop(cfg)
    print("  stopped stripe-mock and kafka")


def portal_links(cfg: PlatformConfig, sample: dict[str, Any], ttl_s: int = 24 * 3600) -> None:
    """The portal's address and one sign-in link per sample holder."""
    from tributary.portal.app import expiry_text, link
    from tributary.portal.auth import Signer, load_secret

    signer = Signer(load_secret(cfg.run_dir))
    base = f"http://127.0.0.1:{cfg.portal_port}"
    problem = local.stage_health(cfg, local.PORTAL)
    print(f"holder portal: {base}" + (f" (not answering: {problem})" if problem else ""))
    print(f"sign-in links, one per holder (each works until {expiry_text(ttl_s)}):")
    for holder in sample["holders"]:
        print(f"  {holder['holder_id']:<10} {link(base, signer, holder['holder_id'], ttl_s)}")
