"""The ``tributary`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from tributary.config import ConfigError, PlatformConfig, load_pipeline, load_platform
from tributary.errors import UserError
from tributary.money import is_currency
from tributary.platform.procs import PlatformError

if TYPE_CHECKING:
    from sinks.stripe.accounts import ConnectAccounts
    from tributary.reports import Query

DESCRIPTION = """\
tributary: continuous royalty tracking and payment for AI inference.

Inference events flow through Kafka to stream processors that price them, embedding
workers that attribute each output to registered works, an exact integer ledger in
ClickHouse, and Stripe Connect payouts. Every stage is its own process.

quick start:
  tributary demo          everything end to end on this machine, then a summary
  tributary up            start Kafka + stripe-mock (state under --data-dir)
  tributary run streams   run one stage in the foreground (see `run --help`)
  tributary sql "SELECT * FROM holder_balances"
"""

STAGE_HELP = """\
stages:
  streams          Faust worker: ingest (validate, dedupe, price, fan out)
  accrue           attributions + corrections -> ledger entries (Kafka transactions)
  balances         ledger entries + payout policies -> balances, payout requests (Kafka transactions)
  indexer          embeds registered works once -> catalog-chunks
  attribution      embeds outputs in micro-batches, searches Qdrant -> attributions
  sink-clickhouse  every topic -> ClickHouse tables; serves read-only SQL
  sink-stripe      payout-requests -> Stripe Connect transfers -> payout-results
  portal           the rights holders' web portal (read-only; disputes go to review-requests),
                   on --portal-port; sign-in links from `tributary portal link <holder>`
"""


def _platform_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("platform (also TRIBUTARY_* environment variables)")
    g.add_argument("--data-dir", type=Path, help="state directory (default ~/.local/share/tributary)")
    g.add_argument("--kafka-port", type=int, help="broker port on 127.0.0.1 (default 19092)")
    g.add_argument("--kafka-controller-port", type=int, help="KRaft controller port (default 19093)")
    g.add_argument("--stripe-port", type=int, help="stripe-mock port (default 12111)")
    g.add_argument("--clickhouse-query-port", type=int,
                   help="port of the ClickHouse sink's query server (default 18123)")
    g.add_argument("--portal-port", type=int, help="port of the holder portal (default 8400)")


def _policy_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("payout policy")
    g.add_argument("--min-payout", type=Decimal, metavar="AMOUNT",
                   help="smallest payout in any currency not given with --min-payout-in, e.g. 5.00")
    g.add_argument("--min-payout-in", action="append", default=[], metavar="CUR=AMOUNT",
                   help="smallest payout in one currency, e.g. JPY=1000 or EUR=5.00 (repeatable)")
    g.add_argument("--max-fee-share", type=float, metavar="FRACTION",
                   help="no payout while estimated fees exceed this share of it, e.g. 0.05")
    g.add_argument("--cadence-days", type=float, metavar="DAYS", help="at most one payout per this many days")
    g.add_argument("--pause", action="store_true", help="hold all payouts for this holder")


def _currency(text: str) -> str:
    if not is_currency(text.upper()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a currency code (e.g. USD, EUR, JPY)")
    return text.upper()


def _micros(amount: Decimal, what: str) -> int:
    micros = amount * 1_000_000
    if micros != micros.to_integral_value() or micros < 1:
        raise UserError(f"{what} {amount}: must be positive and have at most six decimals")
    return int(micros)


def _policy_from_args(args: argparse.Namespace) -> dict[str, object]:
    currencies: dict[str, dict[str, int]] = {}
    for item in args.min_payout_in:
        currency, _, amount = item.partition("=")
        if not is_currency(currency):
            raise UserError(f"--min-payout-in {item!r}: expected CUR=AMOUNT with a currency code like JPY or EUR")
        try:
            currencies[currency] = {"min_payout_micros": _micros(Decimal(amount), f"--min-payout-in {currency}")}
        except InvalidOperation:
            raise UserError(f"--min-payout-in {item!r}: {amount!r} is not an amount") from None
    return {
        "min_payout_micros": _micros(args.min_payout, "--min-payout") if args.min_payout is not None else None,
        "currencies": currencies or None,
        "max_fee_bps": round(args.max_fee_share * 10_000) if args.max_fee_share is not None else None,
        "min_interval_s": round(args.cadence_days * 86_400) if args.cadence_days is not None else None,
        "paused": True if args.pause else None,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tributary", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _platform_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="start the local platform: Kafka (KRaft) and stripe-mock",
                       description="Start a real Kafka broker (jars from Maven Central, cached) and "
                                   "stripe-mock on loopback, and create the topics from schemas/topics.")
    p = sub.add_parser("down", help="stop every process tributary started",
                       description="Stop the stages, stripe-mock and Kafka (no orphan JVMs).")
    p.add_argument("--wipe", action="store_true", help="also delete Kafka and ClickHouse data")
    p = sub.add_parser("topics", help="create the pipeline's topics from schemas/topics (any Kafka)")
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    t = tsub.add_parser("create", help="create missing topics (TRIBUTARY_KAFKA_BOOTSTRAP for an external cluster); "
                                       "a topic whose partition count differs from its manifest is an error")
    t.add_argument("--contracts", type=Path, metavar="FILE",
                   help="then publish the contract versions in FILE that are not on the contracts topic yet "
                        "(as `contracts add`; the chart's topics job passes its `contracts` values)")

    p = sub.add_parser("contracts", help="royalty contracts: publish new versions, list them",
                       description="Contracts are data: each version (rate, currency, token prices, validity, "
                                   "models) is a contract.v1 record on the compacted contracts topic, immutable "
                                   "once published (new terms are a new version). Ingest prices each event "
                                   "with the version in force at its occurred_at, and every ledger entry "
                                   "names that version. The built-in sample contracts (TRIBUTARY_CONTRACTS_FILE, "
                                   "`none` to leave them out) are known too.")
    csub2 = p.add_subparsers(dest="contracts_command", metavar="ACTION", required=True)
    c2 = csub2.add_parser("add", help="validate and publish the versions in a file",
                          description="FILE: {\"contracts\": [...]}, a JSON list, one contract object, or "
                                      "JSON Lines; fields as schemas/json/contract.v1.json (schema_version "
                                      "optional). A version already published with other terms is refused.")
    c2.add_argument("file", type=Path)
    c2 = csub2.add_parser("list", help="every known contract version")
    c2.add_argument("--format", choices=["table", "json"], default="table")
    sub.add_parser("status", help="what is running, healthy, halted, where, and its log file")
    p = sub.add_parser("resume", help="resume ingest after the dead-letter rate limit halted it",
                       description="When most recent events were dead-lettered (a bad producer deploy), the "
                                   "streams worker halts and stays halted across restarts. After fixing the "
                                   "producers, this empties the limit's recent history (in the ingest table's "
                                   "changelog on Kafka) and starts the local streams worker again. On "
                                   "Kubernetes run it with --no-start against the cluster's Kafka "
                                   "(TRIBUTARY_KAFKA_BOOTSTRAP); the restarting pod then resumes.")
    p.add_argument("what", choices=["ingest"])
    p.add_argument("--no-start", action="store_true", help="only reset the history; do not start the worker")
    p = sub.add_parser("doctor", help="check this machine and the platform; each failure says how to fix it")
    p.add_argument("--skip-model", action="store_true", help="do not load the embedding model")

    p = sub.add_parser("run", help="run one pipeline stage in the foreground", description=STAGE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["streams", "accrue", "balances", "indexer", "attribution", "sink-clickhouse",
                                     "sink-stripe", "portal"])
    p.add_argument("--metrics-port", type=int, default=0,
                   help="accrue, balances, indexer, attribution, sink-stripe: serve /healthz, /readyz and Prometheus "
                        "/metrics on this port (0: off)")
    p.add_argument("--web-port", type=int, default=6066,
                   help="streams: Faust web port (/healthz and /metrics)")
    p.add_argument("--worker-id", default="0",
                   help="attribution, accrue, balances, sink-stripe: unique per process of the stage (its Kafka "
                        "transactional id and local state folder); default 0")
    p.add_argument("--host", default=os.environ.get("TRIBUTARY_HTTP_HOST", "127.0.0.1"),
                   help="portal: the address to listen on (TRIBUTARY_HTTP_HOST, 0.0.0.0 in a pod); "
                        "default 127.0.0.1")

    p = sub.add_parser("portal", help="the rights holders' web portal: sign-in links",
                       description="Holders sign in to the portal (`tributary run portal`, started by "
                                   "`tributary demo`) with a signed link that expires. The signing secret is "
                                   "TRIBUTARY_PORTAL_SECRET or, locally, run/portal-secret under --data-dir "
                                   "(shared with the portal process).")
    psub = p.add_subparsers(dest="portal_command", metavar="ACTION", required=True)
    c = psub.add_parser("link", help="print a holder's sign-in link")
    c.add_argument("holder", help="holder id, e.g. h-austen")
    c.add_argument("--ttl-hours", type=float, default=24.0, help="how long the link works (default 24)")
    c.add_argument("--base-url", help="the portal's address as holders reach it "
                                      "(default http://127.0.0.1:<portal port>)")

    p = sub.add_parser("catalog", help="register works")
    csub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    c = csub.add_parser("add", help="register works from a JSON lines file, a text file or a folder of text files",
                        description="PATH is a .jsonl file (one {work_id, holder_id, title, license, text} per "
                                    "line), a .txt/.md file (one work) or a folder of them (one work per file, "
                                    "work id from the file name). Registering a work id again replaces its text "
                                    "(a new catalog version). The indexer chunks and embeds each work once. Each "
                                    "work travels as one Kafka record of at most 990,000 bytes (as JSON): "
                                    "split longer works, e.g. one file per chapter.")
    c.add_argument("path", type=Path)
    c.add_argument("--holder", help="holder id for text files (and JSON lines without one)")
    c.add_argument("--license", default="", help="license terms recorded with text files")
    c.add_argument("--work-id", help="single text file: the work id (default: from the file name)")
    c.add_argument("--title", help="single text file: the title (default: from the file name)")
    c = csub.add_parser("remove", help="withdraw a work: its chunks leave every index; nothing is paid for it "
                                       "from then on (past ledger entries stand)")
    c.add_argument("work_id")
    c.add_argument("--reason", default="", help="recorded with the withdrawal")
    p = sub.add_parser("holders", help="onboard rights holders, their Connect accounts and payout policies",
                       description="Holders are paid through Stripe Connect Express accounts: `add` creates "
                                   "the account and prints Stripe's hosted onboarding link for the holder; "
                                   "until Stripe can send the account transfers, that holder's payouts wait "
                                   "(`status` shows why) and are issued once it can.")
    hsub = p.add_subparsers(dest="holders_command", metavar="ACTION", required=True)
    h = hsub.add_parser("add", help="create the holder's Express account, register it, print its onboarding link")
    h.add_argument("--id", required=True, dest="holder_id")
    h.add_argument("--name", required=True)
    h.add_argument("--email", required=True)
    _policy_args(h)
    h = hsub.add_parser("policy", help="set a holder's payout policy (unset fields keep the defaults)")
    h.add_argument("--id", required=True, dest="holder_id")
    _policy_args(h)
    h = hsub.add_parser("link", help="a fresh onboarding link for a holder (they expire within minutes)")
    h.add_argument("--id", required=True, dest="holder_id")
    h = hsub.add_parser("login", help="a link to the holder's Stripe Express dashboard (after onboarding)")
    h.add_argument("--id", required=True, dest="holder_id")
    h = hsub.add_parser("status", help="whether each holder's account can receive transfers, and why not",
                        description="Asks Stripe about each holder's Connect account and tells the balances "
                                    "stage (payouts wait while an account cannot receive transfers, and are "
                                    "issued once it can).")
    h.add_argument("--id", dest="holder_id", help="only this holder (default: every holder)")

    p = sub.add_parser("loadgen", help="publish synthetic inference events at a steady rate",
                       description="Publish --count events at --rate per second through the producer "
                                   "SDK (idempotent, acks=all), showing progress every second.")
    p.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    p.add_argument("--count", type=int, default=1000, help="events to publish (default 1000)")
    p.add_argument("--invalid", type=float, default=0.0, metavar="FRACTION",
                   help="share of malformed events, e.g. 0.01 (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed: event ids are loadgen-<seed>-<n>")

    p = sub.add_parser("sql", help="run a read-only SQL query against ClickHouse",
                       description="Runs while the pipeline runs (through the sink's query server) "
                                   "or offline (opens the embedded engine read-only).")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("report", help="named analyst reports: earnings, escrow, coverage, payouts",
                       description="Named reports over the ClickHouse ledger (exact: read through the "
                                   "deduplicating FINAL views; earnings from the exact rollups, refreshed every "
                                   "30 s, or --live). Runs while the pipeline runs. Example: "
                                   "tributary report earnings --by holder,model --last-days 7",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=["earnings", "escrow", "coverage", "payouts"],
                   help="earnings: accruals net of refunds; escrow: unattributed money; coverage: share "
                        "of events attributed; payouts: every payout and its outcome")
    p.add_argument("--by", default="holder",
                   help="earnings only: comma-separated dimensions among holder, work, model, provider, day "
                        "(default holder)")
    _period_args(p)
    p.add_argument("--holder", help="earnings and payouts: only this holder id")
    p.add_argument("--live", action="store_true",
                   help="earnings only: read the journal itself (exact to this moment; seconds on a large ledger) "
                        "instead of the rollups (exact as of their last refresh, at most 30 s ago; milliseconds)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")

    p = sub.add_parser("statement", help="a rights holder's statement: accruals, refunds, payouts, remainder",
                       description="The holder's unpaid balance brought forward, royalties per day/work/model, "
                                   "refunds, payouts (with Stripe transfer ids and failures) and the remainder "
                                   "carried forward, for a period of ledger dates, in one currency (amounts "
                                   "in different currencies are never added up).")
    p.add_argument("holder_id")
    p.add_argument("--currency", type=_currency,
                   help="the currency of the statement (needed when the holder earns in several)")
    _period_args(p)
    p.add_argument("--format", choices=["text", "csv", "html"], default="text")
    p.add_argument("--output", type=Path, help="write to this file instead of standard output")

    p = sub.add_parser("explain", help="why a payout or an event paid what it did, down to matched chunks",
                       description="Given a payout id: its outcome, the ledger credits it settles (first in, "
                                   "first out), their events and the catalog chunks they matched. Given an "
                                   "event id: its pricing, attribution with evidence, ledger entries and payouts.")
    p.add_argument("id", help="a payout id (po_...) or an event id")
    p.add_argument("--limit", type=int, default=20, help="show at most this many credits (default 20)")

    p = sub.add_parser("trial-balance", help="check that the ledger's books close, per account and currency",
                       description="Sums every ledger account per currency from ClickHouse and checks the "
                                   "invariants of tributary/ledger.py: debits equal credits in each currency, "
                                   "every account's balance stands on its normal side, and each holder's "
                                   "reserved account equals their payout requests still awaiting an outcome. "
                                   "Prints the totals per account kind (every account with --accounts) and "
                                   "each problem; exit code 1 if any. Right after traffic, the ClickHouse sink "
                                   "may not have written a request's outcome yet: run it again once it has "
                                   "caught up (`tributary status`).")
    p.add_argument("--accounts", action="store_true", help="list every account, not only the totals per kind")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("reconcile", help="compare the ledger's payouts with the transfers Stripe reports",
                       description="Payout requests, their results, their ledger entries (reservation and "
                                   "outcome) and Stripe's transfers, each against the others, per currency. "
                                   "Lists every mismatch with what to do: duplicate transfers, amounts, currencies "
                                   "or destinations that differ, payouts paid in the ledger but absent at Stripe, "
                                   "transfers no payout explains, failed payouts that were transferred anyway, "
                                   "requests never reserved, results never posted to the ledger. Exit code 1 "
                                   "if any mismatch. Uses TRIBUTARY_STRIPE_API_KEY / TRIBUTARY_STRIPE_API_BASE. "
                                   "stripe-mock keeps no state (it lists one fixture transfer), so run this "
                                   "against Stripe itself.")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("review", help="decide probable (semantic) attributions: list, accept, reject",
                       description="Probable attributions (a semantic match, nothing copied) are paid at the "
                                   "contract's probable_weight_bps and the rest is held in escrow:review. "
                                   "`review list` shows the undecided ones with each matched sentence pair; "
                                   "`review accept|reject EVENT --work WORK --reason TEXT` publishes the "
                                   "decision, which the ledger posts as reversals and new accruals (never "
                                   "edits). The first decision on an (event, work) stands.")
    rsub = p.add_subparsers(dest="review_command", required=True)
    rp = rsub.add_parser("list", help="undecided probable attributions with their evidence")
    rp.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    rp.add_argument("--event", help="only this event")
    rp.add_argument("--format", choices=["text", "json"], default="text")
    for name, what in (("accept", "the work was used: release the held part to the holder"),
                       ("reject", "not derived from the work: move its whole share to escrow:unattributed")):
        rp = rsub.add_parser(name, help=what)
        rp.add_argument("event_id")
        rp.add_argument("--work", required=True, help="the work whose probable share is decided")
        rp.add_argument("--reason", required=True, help="why (kept in the ledger's corrections)")
        rp.add_argument("--reviewer", default=os.environ.get("USER", "operator"), help="who decided")

    p = sub.add_parser("eval", help="measure attribution quality on labelled sets (built-in or your own)",
                       description="Indexes a catalog with the real model (embedded Qdrant + exact rescoring + "
                                   "verbatim span index), calibrates the bar from the catalog itself (leave one "
                                   "work out), runs every labelled case through the worker's code and reports, "
                                   "per level and split (dev / heldout), attributed recall, false attribution "
                                   "(with 95% intervals clustered by source document), share error over the "
                                   "whole pool, and the targets. Without --catalog it runs the built-in sets "
                                   "(novels and technical documentation). File format: README 'Evaluate on "
                                   "your own catalog'.")
    p.add_argument("--catalog", type=Path, help="your catalog: JSON Lines {work_id, holder_id, text}")
    p.add_argument("--cases", type=Path, help="your labelled outputs: JSON Lines {case_id, level, text, "
                                              "planted: {work_id: fraction of words}, avoid, split}")
    p.add_argument("--set", action="append", dest="sets", metavar="NAME",
                   help="a built-in set to run (repeatable; default: all of them unless --catalog is given)")
    p.add_argument("--threshold", type=float,
                   help="decide at this fixed bar instead of the catalog's calibration (with --margin)")
    p.add_argument("--margin", type=float, default=0.0, help="with --threshold: the margin over the runner-up")
    p.add_argument("--trim", type=float, default=0.0,
                   help="leave this share of works (those whose sentences pass the null most often: families "
                        "of works restating one another) out of the calibration's pass rate, as "
                        "TRIBUTARY_CALIBRATION_TRIM does for the workers (default 0; README 'Attribution')")
    p.add_argument("--calibration-corpus", type=Path,
                   help="unrelated same-genre text (JSON Lines {text, document}) added to each catalog's null, "
                        "as TRIBUTARY_CALIBRATION_CORPUS does for the workers")
    p.add_argument("--json", type=Path, help="also write the full report as JSON here")
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"],
                   help="embedding backend (default: TRIBUTARY_EMBED_BACKEND, else auto: torch on a GPU, "
                        "onnx-int8 on a CPU); each model variant has its own calibration")

    p = sub.add_parser("demo", help="run the whole pipeline end to end on sample data and print a summary")
    p.add_argument("--events", type=int, default=1000, help="inference events to publish (default 1000)")
    p.add_argument("--keep-running", action="store_true", help="leave the platform and stages running")
    p.add_argument("--timeout", type=float, default=1200, help="seconds to wait for each phase")
    return parser


def _period_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="first day, inclusive (YYYY-MM-DD)")
    p.add_argument("--until", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--last-days", type=int, help="the last N days up to --until (default today)")


def _platform(args: argparse.Namespace) -> PlatformConfig:
    return load_platform(
        data_dir=args.data_dir, kafka_port=args.kafka_port, kafka_controller_port=args.kafka_controller_port,
        stripe_port=args.stripe_port, clickhouse_query_port=args.clickhouse_query_port,
        portal_port=args.portal_port,
    )


def _print_table(columns: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in columns]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} rows)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from tributary.query import QueryError

    try:
        return _dispatch(args)
    except (ConfigError, PlatformError, QueryError, UserError) as exc:
        # errors the user can fix: one line (or ConfigError's list), no traceback; anything
        # else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _check_output(path: Path, option: str) -> None:
    """Fail before any work when ``path`` cannot be written as a file."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name, e.g. {path / 'out.txt'}")
    if not path.parent.is_dir():
        raise UserError(f"{option} {path}: the folder {path.parent} does not exist; create it first "
                        f"(mkdir -p {path.parent}) or choose another path")


def _write_output(path: Path, text: str, option: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write it: {exc.strerror or exc}") from None


def _dispatch(args: argparse.Namespace) -> int:  # noqa: C901 - one branch per command
    cfg = _platform(args)
    if args.command == "up":
        from tributary.platform import local

        local.up(cfg)
        return 0
    if args.command == "down":
        from tributary.platform import local

        local.down(cfg, wipe=args.wipe)
        return 0
    if args.command == "topics":
        from tributary.platform.topics import ensure_topics

        try:
            ensure_topics(cfg.bootstrap_servers)
        except Exception as exc:  # noqa: BLE001 - report the broker's answer, not a traceback
            print(f"error: could not create topics on {cfg.bootstrap_servers}: {exc}", file=sys.stderr)
            return 1
        print(f"topics present on {cfg.bootstrap_servers}")
        return _contracts_add(cfg, args.contracts) if args.contracts else 0
    if args.command == "contracts":
        if args.contracts_command == "add":
            return _contracts_add(cfg, args.file)
        return _contracts_list(cfg, args.format)
    if args.command == "status":
        from tributary.platform import local

        components = local.status(cfg)
        for name, state, detail in components:
            print(f"{name:<16} {state:<9} {detail}")
        if components[0][1] == "running":
            from tributary.lag import LagReader

            try:
                lags = LagReader(cfg.bootstrap_servers).stage_lags()
            except Exception as exc:  # noqa: BLE001 - status must not crash on a sick broker
                print(f"consumer lag unavailable: {exc}")
            else:
                print("consumer lag (messages not yet committed; transactional topics show 1 per "
                      "partition when caught up): " + ", ".join(f"{k} {v}" for k, v in lags.items()))
        return 0
    if args.command == "doctor":
        from tributary.doctor import report, run_checks

        return 0 if report(run_checks(cfg, with_model=not args.skip_model)) else 1
    if args.command == "run":
        return _run_stage(args, cfg)
    if args.command == "portal":
        return _portal_link(args, cfg)
    if args.command == "resume":
        return _resume(args, cfg)
    if args.command == "sql":
        from tributary.query import QueryError, query

        try:
            columns, rows = query(cfg, args.query)
        except QueryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        _emit(columns, rows, args.format)
        return 0
    if args.command == "eval":
        from gpu_workers import evaluate
        from gpu_workers.embedder import load_embedder

        if args.json:
            _check_output(args.json, "--json")
        if args.threshold is not None and not (0 < args.threshold < 1 and 0 <= args.margin < 1):
            print("error: --threshold must be within (0, 1) and --margin within [0, 1)", file=sys.stderr)
            return 2
        if args.margin and args.threshold is None:
            print("error: --margin applies to a fixed --threshold; without one the catalog's calibrated margin is "
                  "used (add --threshold, or drop --margin)", file=sys.stderr)
            return 2
        if not 0 <= args.trim <= 0.5:
            print("error: --trim must be within [0, 0.5]", file=sys.stderr)
            return 2
        if (args.catalog is None) != (args.cases is None):
            print("error: --catalog and --cases go together", file=sys.stderr)
            return 2
        try:
            sets = args.sets
            for name in sets or []:
                if name not in evaluate.builtin_sets():
                    raise evaluate.EvalInputError(f"--set {name}: no such built-in set (have: "
                                                  f"{', '.join(evaluate.builtin_sets())})")
            result = evaluate.run(load_embedder(None if args.backend == "auto" else args.backend), sets=sets,
                                  catalog_file=args.catalog, cases_file=args.cases,
                                  fixed=None if args.threshold is None else (args.threshold, args.margin),
                                  corpus_file=args.calibration_corpus, trim=args.trim,
                                  log=lambda m: print(m, flush=True))
        except evaluate.EvalInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(evaluate.render(result))
        if args.json:
            _write_output(args.json, json.dumps(result, indent=2) + "\n", "--json")
        return 0
    if args.command in ("report", "statement", "explain", "reconcile", "trial-balance"):
        return _reporting(args, cfg)
    if args.command == "review":
        return _review(args, cfg)
    if args.command == "catalog":
        from tributary import catalog

        try:
            if args.catalog_command == "remove":
                records = [catalog.removal_record(args.work_id, args.reason)]
            else:
                records = catalog.works_from_path(args.path, args.holder, args.license, args.work_id, args.title)
        except catalog.CatalogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        catalog.publish(cfg.bootstrap_servers, records)
        if args.catalog_command == "remove":
            print(f"withdrew {args.work_id}: the indexer removes its chunks from every attribution worker")
        else:
            print(f"registered {len(records)} works: " + ", ".join(r["work_id"] for r in records[:10])
                  + (" ..." if len(records) > 10 else ""))
        return 0
    if args.command == "holders":
        return _holders(args, cfg)
    if args.command == "loadgen":
        from tributary import loadgen

        if args.rate <= 0 or args.count < 1 or not 0 <= args.invalid < 1:
            print("error: need --rate > 0, --count >= 1 and 0 <= --invalid < 1", file=sys.stderr)
            return 2
        result = loadgen.run(cfg.bootstrap_servers, args.rate, args.count, args.invalid, args.seed)
        return 0 if result["undelivered"] == 0 and result["failed"] == 0 else 1
    if args.command == "demo":
        from tributary import demo

        if args.events < 1:
            print("error: --events must be >= 1", file=sys.stderr)
            return 2
        return demo.run(cfg, load_pipeline(), args.events, args.keep_running, args.timeout)
    raise AssertionError(args.command)


def _resume(args: argparse.Namespace, cfg: PlatformConfig) -> int:
    from streams.dlq_limit import resume
    from tributary.platform import local

    proc = local.stage_process(cfg, "streams")
    if proc.running():
        print(f"error: the streams worker is running (pid {proc.pid()}), so ingest is not halted; "
              "see `tributary status`", file=sys.stderr)
        return 1
    reason = cfg.streams_halt_file.read_text().strip() if cfg.streams_halt_file.exists() else None
    try:
        partitions = resume(cfg.bootstrap_servers)
    except Exception as exc:  # noqa: BLE001 - the broker's answer, in one line
        print(f"error: could not reset the dead-letter history on {cfg.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    cfg.streams_halt_file.unlink(missing_ok=True)
    print(f"dead-letter history reset on {partitions} ingest partitions"
          + (f" (halted because: {reason})" if reason else ""))
    if args.no_start:
        return 0
    from tributary import demo

    pid = demo.start_stage(cfg, "streams")
    print(f"started streams (pid {pid}, log {proc.log_file}); watch it with `tributary status`")
    return 0


def _review(args: argparse.Namespace, cfg: PlatformConfig) -> int:
    from tributary import reports, review

    run = reports.runner(cfg)
    if args.review_command == "list":
        if args.limit < 1:
            raise UserError(f"--limit {args.limit}: must be 1 or more")
        items = review.pending(run, args.limit, args.event)
        print(json.dumps(items, indent=2) if args.format == "json" else review.render(items))
        return 0
    record = review.decide(run, cfg.bootstrap_servers, args.event_id, args.work, args.review_command, args.reason,
                           args.reviewer)
    print(f"{args.review_command}ed {args.event_id} / {args.work} ({record['correction_id']}): the accrue stage "
          "posts the ledger entries; see them with `tributary explain " + args.event_id + "`")
    return 0


def _reporting(args: argparse.Namespace, cfg: PlatformConfig) -> int:
    from tributary import reports

    if args.command == "statement" and args.output:
        _check_output(args.output, "--output")
    if args.command == "explain" and args.limit < 0:
        raise UserError(f"--limit {args.limit}: must be 0 or more")
    run = reports.runner(cfg)
    try:
        if args.command == "reconcile":
            return _reconcile(args, cfg, run)
        if args.command == "trial-balance":
            return _trial_balance(args, run)
        if args.command == "explain":
            print("\n".join(reports.explain(run, args.id, args.limit)))
            return 0
        since, until = reports.dates(args.since, args.until, args.last_days)
        if args.command == "statement":
            st = reports.statement(run, args.holder_id, since, until, args.currency)
            render = {"text": reports.statement_text, "csv": reports.statement_csv, "html": reports.statement_html}
            text = render[args.format](st)
            if args.output:
                _write_output(args.output, text, "--output")
                print(f"wrote {args.output} ({len(st.lines)} lines; carried forward "
                      f"{st.closing_micros} micros {st.currency})")
            else:
                print(text, end="")
            return 0
        if args.name == "earnings":
            columns, rows = reports.earnings(run, args.by.split(","), since, until, args.holder, live=args.live)
        elif args.name == "payouts":
            columns, rows = reports.payouts(run, since, until, args.holder)
        elif args.name == "escrow":
            columns, rows = reports.escrow(run, since, until)
        else:
            columns, rows = reports.coverage(run, since, until)
    except reports.ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _emit(columns, rows, args.format)
    return 0


def _emit(columns: list[str], rows: list[list[object]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=1))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        _print_table(columns, rows)


def _read_contract_file(path: Path) -> list[dict[str, object]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        try:
            raw = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not JSON or JSON Lines (line {exc.lineno}: {exc.msg})") from None
    items = raw.get("contracts", [raw]) if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(f"{path}: expected contract objects ({{\"contracts\": [...]}}, a list, or JSON Lines)")
    return items


def _contracts_add(cfg: PlatformConfig, path: Path) -> int:
    from schemas import first_problem
    from streams.contracts import (
        ContractBook,
        ContractFeed,
        contract_key,
        contract_record,
        parse_contract,
    )
    from tributary import kafka
    from tributary.topics import Topic

    book = ContractBook.load()
    ContractFeed(cfg.bootstrap_servers, book).refresh()
    problems, new = [], []
    for n, item in enumerate(_read_contract_file(path), 1):
        record = {"schema_version": 1, **item}
        where = f"{path} contract {n} ({item.get('contract_id')} v{item.get('version')})"
        problem = first_problem("contract.v1", record)
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        try:
            contract = parse_contract(record)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if book.get(contract.contract_id, contract.version) == contract:
            continue  # published before: nothing to do
        refused = book.add(contract)
        if refused:
            problems.append(f"{where}: {refused}")
        else:
            new.append(contract)
    if problems:
        print("error: nothing published:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    kafka.publish(cfg.bootstrap_servers, Topic.CONTRACTS.value,
                  [(contract_key(c), contract_record(c)) for c in new], "contracts")
    print(f"published {len(new)} new contract version(s)"
          + (": " + ", ".join(f"{c.contract_id} v{c.version} ({c.currency})" for c in new) if new else
             " (every version in the file was already known)"))
    return 0


def _contracts_list(cfg: PlatformConfig, fmt: str) -> int:
    from streams.contracts import ContractBook, ContractFeed

    book = ContractBook.load()
    builtin = {(c.contract_id, c.version) for c in book.versions()}
    ContractFeed(cfg.bootstrap_servers, book).refresh()
    columns = ["contract_id", "version", "currency", "royalty_rate_bps", "valid_from", "valid_to", "models", "source"]
    rows: list[list[object]] = [
        [c.contract_id, c.version, c.currency, c.royalty_rate_bps, c.valid_from.isoformat(), c.valid_to.isoformat(),
         ",".join(c.models) or "*", "built-in" if (c.contract_id, c.version) in builtin else "contracts topic"]
        for c in book.versions()]
    _emit(columns, rows, fmt)
    return 0


def _holders(args: argparse.Namespace, cfg: PlatformConfig) -> int:
    from tributary import catalog

    pipeline = load_pipeline()

    def accounts() -> ConnectAccounts:  # only what talks to Stripe needs its client (the sinks extra)
        return catalog.connect_accounts(pipeline.stripe_api_key, cfg.stripe_api_base, pipeline.onboarding_return_url)

    if args.holders_command in ("add", "policy"):
        settings = _policy_from_args(args)
        try:
            policy = catalog.policy_record(args.holder_id, **settings)
        except catalog.CatalogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.holders_command == "add":
            holder = {"holder_id": args.holder_id, "name": args.name, "email": args.email}
            onboarded = catalog.onboard_holder(holder, accounts())
            catalog.publish(cfg.bootstrap_servers, [catalog.holder_record(holder, onboarded.account)])
            catalog.publish_readiness(cfg.bootstrap_servers, [catalog.readiness_record(
                args.holder_id, onboarded.account, onboarded.ready, onboarded.reason)])
            print(f"onboarded {args.holder_id} as Express account {onboarded.account}")
            print(f"send the holder this onboarding link (Stripe-hosted, expires within minutes; "
                  f"`tributary holders link --id {args.holder_id}` makes a new one):\n  {onboarded.onboarding_url}")
            if not onboarded.ready:
                print(f"payouts wait until Stripe can send this account transfers: {onboarded.reason}")
        if args.holders_command == "policy" or any(v is not None for v in settings.values()):
            catalog.publish_policies(cfg.bootstrap_servers, [policy])
            print(f"payout policy for {args.holder_id}: "
                  + (", ".join(f"{k}={v}" for k, v in settings.items() if v is not None) or "defaults"))
        return 0
    import stripe

    from sinks.stripe.service import HolderDirectory

    stripe_accounts = accounts()
    known = HolderDirectory(cfg.bootstrap_servers).accounts
    wanted = [args.holder_id] if args.holder_id else sorted(known)
    missing = [h for h in wanted if h not in known]
    if missing:
        raise UserError(f"no Connect account registered for {', '.join(missing)}: onboard with "
                        "`tributary holders add --id ... --name ... --email ...`")
    try:
        if args.holders_command == "link":
            print(stripe_accounts.onboarding_link(known[args.holder_id]))
            return 0
        if args.holders_command == "login":
            print(stripe_accounts.login_link(known[args.holder_id]))
            return 0
        rows: list[list[object]] = []
        records = []
        for holder_id in wanted:
            readiness = stripe_accounts.readiness(known[holder_id])
            records.append(readiness.record(holder_id))
            rows.append([holder_id, readiness.account, "yes" if readiness.ready else "no",
                         readiness.reason or "-"])
    except stripe.StripeError as exc:
        raise UserError(f"Stripe at {cfg.stripe_api_base} did not answer: {exc.user_message or exc} "
                        "(check STRIPE_API_KEY and TRIBUTARY_STRIPE_API_BASE)") from None
    catalog.publish_readiness(cfg.bootstrap_servers, records)
    _print_table(["holder_id", "account", "can_receive_transfers", "why_not"], rows)
    waiting = sum(1 for r in records if not r["transfers_ready"])
    print(f"{len(rows)} holders; {waiting} whose payouts wait on their account" if waiting
          else f"{len(rows)} holders; every account can receive transfers")
    return 0


def _trial_balance(args: argparse.Namespace, run: Query) -> int:
    from tributary import ledger, reports

    balances, pending = reports.trial_balance(run)
    problems = ledger.problems(balances, pending)
    if args.accounts:
        columns = ["currency", "account", "balance_micros"]
        rows: list[list[object]] = [[c, a, b] for (a, c), b in sorted(balances.items(), key=lambda i: i[0][::-1])]
    else:
        totals: dict[tuple[str, str], list[int]] = {}
        for (account, currency), balance in balances.items():
            try:
                kind = str(ledger.account_kind(account)[0])
            except ledger.InvalidEntry:
                kind = "not in the chart"
            total = totals.setdefault((currency, kind), [0, 0])
            total[0] += balance
            total[1] += 1
        columns = ["currency", "account_kind", "balance_micros", "accounts"]
        rows = [[c, k, b, n] for (c, k), (b, n) in sorted(totals.items())]
    if args.format == "json":
        print(json.dumps({"columns": columns, "rows": rows, "problems": problems}, indent=1))
    else:
        _print_table(columns, rows)
        print("\n".join(["", *problems, f"{len(problems)} PROBLEM(S)"]) if problems else
              f"the books close: {len(balances)} accounts, debits equal credits in every currency")
    return 1 if problems else 0


def _reconcile(args: argparse.Namespace, cfg: PlatformConfig, run: object) -> int:
    try:
        import stripe

        from sinks.stripe.payouts import StripeTransfers
    except ImportError:
        raise UserError("reconcile needs the Stripe client: pip install 'tributary[sinks]'") from None
    from sinks.stripe.reconcile import ACTIONS, LEDGER_SQL, ledger_payouts, reconcile
    from tributary.query import query

    pipeline = load_pipeline()
    payouts = ledger_payouts(query(cfg, LEDGER_SQL)[1])
    try:
        transfers = StripeTransfers(pipeline.stripe_api_key, cfg.stripe_api_base).all_transfers()
    except stripe.StripeError as exc:
        raise UserError(f"Stripe at {cfg.stripe_api_base} did not list the transfers: "
                        f"{exc.user_message or exc} (check STRIPE_API_KEY and TRIBUTARY_STRIPE_API_BASE)") from None
    findings = reconcile(payouts, transfers)
    mismatches = [f for f in findings if f.is_mismatch]
    if args.format == "json":
        print(json.dumps({"payouts": len(payouts), "transfers": len(transfers),
                          "findings": [f.as_dict() for f in findings]}, indent=1))
    else:
        _print_table(["kind", "payout_id", "holder_id", "detail"],
                     [[f.kind, f.payout_id, f.holder_id, f.detail] for f in findings])
        for kind in sorted({f.kind for f in mismatches}):
            print(f"what to do about {kind}: {ACTIONS[kind]}")
        print(f"{len(payouts)} ledger payouts, {len(transfers)} Stripe transfers: "
              + (f"{len(mismatches)} MISMATCH(ES)" if mismatches else "books agree"))
    return 1 if mismatches else 0


def _portal_link(args: argparse.Namespace, cfg: PlatformConfig) -> int:
    from tributary.portal.app import expiry_text, link
    from tributary.portal.auth import Signer, load_secret
    from tributary.portal.data import profile
    from tributary.reports import runner

    if not 0 < args.ttl_hours <= 24 * 31:
        raise UserError(f"--ttl-hours {args.ttl_hours}: must be more than 0 and at most 744 (31 days)")
    if profile(runner(cfg), args.holder) is None:
        raise UserError(f"no holder {args.holder!r} in the catalog or the ledger; list them with "
                        "`tributary sql \"SELECT holder_id, name FROM holders FINAL\"`")
    ttl = int(args.ttl_hours * 3600)
    base = args.base_url or f"http://127.0.0.1:{cfg.portal_port}"
    print(link(base, Signer(load_secret(cfg.run_dir)), args.holder, ttl))
    print(f"(works until {expiry_text(ttl)}; anyone with this link can read {args.holder}'s royalties until then)",
          file=sys.stderr)
    return 0


def _run_stage(args: argparse.Namespace, cfg: PlatformConfig) -> int:
    from tributary import stages
    from tributary.platform import kafka

    pipeline = load_pipeline()
    if args.stage == "portal":  # reads ClickHouse; Kafka only for disputes
        outcome = stages.supervised("portal")
        if outcome is not None:
            return outcome
        from tributary.logs import setup
        from tributary.portal.service import serve

        setup("portal")
        login_link = None
        if os.environ.get("TRIBUTARY_PORTAL_STRIPE_DASHBOARD", "1") == "1":
            def login_link(account: str) -> str:
                from sinks.stripe.accounts import ConnectAccounts

                return ConnectAccounts(pipeline.stripe_api_key, cfg.stripe_api_base).login_link(account)
        serve(cfg, pipeline, args.host, cfg.portal_port, login_link)
        return 0
    try:
        kafka.wait_ready(cfg, timeout=15)
    except PlatformError:
        print(f"error: Kafka is not answering at {cfg.bootstrap_servers}: run `tributary up` first "
              "(or set TRIBUTARY_KAFKA_BOOTSTRAP)", file=sys.stderr)
        return 1
    if args.stage == "streams":
        return stages.run_streams(cfg, pipeline, args.web_port)
    outcome = stages.supervised(args.stage)  # the supervisor returns here; the child runs the stage
    if outcome is not None:
        return outcome
    if args.stage == "indexer":
        stages.run_indexer(cfg, pipeline, args.metrics_port)
    elif args.stage == "attribution":
        stages.run_attribution(cfg, pipeline, args.metrics_port, args.worker_id)
    elif args.stage in ("accrue", "balances"):
        stages.run_money(cfg, pipeline, args.stage, args.metrics_port, args.worker_id)
    elif args.stage == "sink-clickhouse":
        stages.run_sink_clickhouse(cfg, pipeline)
    elif args.stage == "sink-stripe":
        stages.run_sink_stripe(cfg, pipeline, args.metrics_port, args.worker_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
