"""Typed, frozen configuration, read from ``TRIBUTARY_*`` environment variables and
validated at start-up. Every problem is listed at once; secrets are never printed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from tributary.money import is_currency
from tributary.policy import CURRENCY_AMOUNTS, PayoutPolicy


class ConfigError(ValueError):
    """A setting is wrong. The message lists every problem found."""


def default_data_dir() -> Path:
    return Path(os.environ.get("TRIBUTARY_DATA_DIR", Path.home() / ".local/share/tributary"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRIBUTARY_CACHE_DIR", Path.home() / ".cache/tributary"))


def streams_app_id() -> str:
    """The Faust app id (``TRIBUTARY_STREAMS_APP_ID``): it names the streams consumer group
    and its tables' changelog topics."""
    return os.environ.get("TRIBUTARY_STREAMS_APP_ID", "tributary-streams")


@dataclass(frozen=True)
class PlatformConfig:
    """Where the local platform lives and which loopback ports it uses."""

    data_dir: Path = field(default_factory=default_data_dir)
    cache_dir: Path = field(default_factory=default_cache_dir)
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    stripe_port: int = 12111
    clickhouse_query_port: int = 18123
    portal_port: int = 8400  # the holder portal (`tributary run portal`)
    kafka_version: str = "3.9.1"

    @property
    def bootstrap_servers(self) -> str:
        return os.environ.get("TRIBUTARY_KAFKA_BOOTSTRAP", f"127.0.0.1:{self.kafka_port}")

    @property
    def stripe_api_base(self) -> str:
        return os.environ.get("TRIBUTARY_STRIPE_API_BASE", f"http://127.0.0.1:{self.stripe_port}")

    @property
    def clickhouse_dsn(self) -> str:
        return os.environ.get("CLICKHOUSE_URL", f"chdb://{self.data_dir / 'clickhouse'}")

    @property
    def clickhouse_query_url(self) -> str:
        """The ClickHouse sink's read-only query server: ``TRIBUTARY_QUERY_URL`` (its Service,
        from another pod), else this machine's."""
        return os.environ.get("TRIBUTARY_QUERY_URL") or f"http://127.0.0.1:{self.clickhouse_query_port}"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def query_token_file(self) -> Path:
        """The local query server's bearer token (0600), written by the ClickHouse sink at
        each start and read by the CLI; ``TRIBUTARY_QUERY_TOKEN`` takes its place when set."""
        return self.run_dir / "query-token"

    @property
    def streams_halt_file(self) -> Path:
        """Written by the streams worker when the dead-letter rate limit halts ingest."""
        return self.run_dir / "streams.halted"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def validate(self) -> None:
        problems: list[str] = []
        ports = {
            "kafka_port": self.kafka_port,
            "kafka_controller_port": self.kafka_controller_port,
            "stripe_port": self.stripe_port,
            "clickhouse_query_port": self.clickhouse_query_port,
            "portal_port": self.portal_port,
        }
        for name, port in ports.items():
            if not 1024 <= port <= 65535:
                problems.append(f"{name}={port}: must be within 1024..65535")
        if len(set(ports.values())) != len(ports):
            problems.append(f"ports must all differ, got {ports}")
        for name in ("data_dir", "cache_dir"):
            path = getattr(self, name)
            if path.exists() and not path.is_dir():
                problems.append(f"{name}={path}: exists and is not a folder; choose another one")
        if problems:
            raise ConfigError("invalid platform settings:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class PipelineConfig:
    """Settings shared by the pipeline stages."""

    # default payout policy (per-holder policies arrive on the holder-policies topic):
    # a holder is paid once their unpaid balance reaches the threshold, the estimated
    # Connect payout fee (fixed + bps) is at most payout_max_fee_bps of the amount, and
    # payout_min_interval_s of ledger time passed since their last payout
    payout_threshold_micros: int = 1_000_000
    payout_fee_fixed_micros: int = 250_000
    payout_fee_bps: int = 25
    payout_max_fee_bps: int = 1_000
    payout_min_interval_s: int = 0
    # after a payout fails permanently (restricted account, ...), the holder's next attempt
    # waits this long in ledger time instead of failing again on every new accrual
    payout_retry_failed_after_s: int = 86_400
    # the threshold and fixed fee in currencies where the amounts above make no sense:
    # "CUR=min_payout_micros/fee_fixed_micros,..." (amounts in micros of that currency);
    # currencies not listed use the amounts above
    payout_currencies: str = "JPY=150000000/40000000"
    # the Stripe sink asks Stripe again this often about holders whose Connect account
    # could not receive transfers (their payouts wait meanwhile); 0: only `holders status`
    account_recheck_s: float = 300.0
    # where Stripe's hosted onboarding sends a holder back (Account Links): your portal
    onboarding_return_url: str = "http://127.0.0.1:8400/onboarding/done"
    # a duplicate ledger entry is recognised within this many offsets of the original
    ledger_dedupe_window: int = 1_000_000
    # duplicate event_ids are caught within this much event time (older events are late)
    dedupe_window_s: int = 7 * 86_400
    # refunds reverse royalties of events at most this old (event time)
    refund_window_s: int = 30 * 86_400
    # attribution micro-batching
    batch_max_size: int = 64
    batch_max_wait_ms: int = 200
    # micro-batches queued between the worker's threads (poll+tokenize | model | search+produce)
    pipeline_depth: int = 2
    # 0 = decide on the bar calibrated from the registered catalog (the default); > 0 = an
    # operator's fixed bar, with ``similarity_margin`` over the runner-up work
    similarity_threshold: float = 0.0
    similarity_margin: float = 0.0
    # optional: JSON Lines of unrelated same-genre text ({"text", "document"}) added to the
    # catalog's own null when calibrating; helps a small catalog place its margin
    calibration_corpus: str = ""
    # leave this share of works (those whose sentences pass the null most often: families of
    # works restating one another) out of the null's pass rate; 0 = none (README "Attribution")
    calibration_trim: float = 0.0
    # catalog units each output unit's search returns, rescored exactly
    top_k: int = 24
    # the DLQ rate limit: stop ingest if more than this fraction of the last
    # ``dlq_window`` events were dead-lettered (a bad deploy, not bad events)
    dlq_max_fraction: float = 0.5
    dlq_window: int = 1000
    # ... judged only once this many recent events are known: a burst of junk at start-up
    # (one producer's unkeyed records land on one partition together) is not a bad deploy
    dlq_min_events: int = 200
    max_output_chars: int = 100_000
    stripe_api_key: str = field(default="sk_test_tributarylocal", repr=False)

    @property
    def payout_policy(self) -> PayoutPolicy:
        return PayoutPolicy(
            min_payout_micros=self.payout_threshold_micros, fee_fixed_micros=self.payout_fee_fixed_micros,
            fee_bps=self.payout_fee_bps, max_fee_bps=self.payout_max_fee_bps,
            min_interval_s=self.payout_min_interval_s, retry_failed_after_s=self.payout_retry_failed_after_s,
            currencies=parse_currency_amounts(self.payout_currencies),
        )

    def validate(self) -> None:
        problems: list[str] = []
        if not 0 <= self.payout_fee_bps < self.payout_max_fee_bps <= 10_000:
            problems.append("need 0 <= payout_fee_bps < payout_max_fee_bps <= 10000")
        if min(self.payout_fee_fixed_micros, self.payout_min_interval_s, self.payout_retry_failed_after_s) < 0:
            problems.append("payout_fee_fixed_micros and payout_min_interval_s must be >= 0")
        if self.dedupe_window_s < 3600 or self.refund_window_s < 3600:
            problems.append("dedupe_window_s and refund_window_s must be >= 3600")
        if self.ledger_dedupe_window < 1000:
            problems.append("ledger_dedupe_window must be >= 1000 offsets")
        try:
            parse_currency_amounts(self.payout_currencies)
        except ValueError as exc:
            problems.append(f"payout_currencies {exc}")
        if self.payout_threshold_micros < 10_000:
            problems.append("payout_threshold_micros must be >= 10000 (one cent)")
        if not 1 <= self.batch_max_size <= 4096:
            problems.append("batch_max_size must be within 1..4096")
        if not 0 <= self.batch_max_wait_ms <= 60_000:
            problems.append("batch_max_wait_ms must be within 0..60000")
        if not 1 <= self.pipeline_depth <= 64:
            problems.append("pipeline_depth must be within 1..64")
        if not 0.0 <= self.calibration_trim <= 0.5:
            problems.append("calibration_trim must be within [0, 0.5]")
        if not 0.0 <= self.similarity_threshold < 1.0 or not 0.0 <= self.similarity_margin < 1.0:
            problems.append("similarity_threshold and similarity_margin must be within [0, 1) (threshold 0: "
                            "calibrated from the catalog)")
        if not 1 <= self.top_k <= 100:
            problems.append("top_k must be within 1..100")
        if not 0.0 < self.dlq_max_fraction <= 1.0:
            problems.append("dlq_max_fraction must be within (0, 1]")
        if not 1 <= self.dlq_min_events <= self.dlq_window:
            problems.append(f"dlq_min_events={self.dlq_min_events}: must be within 1..dlq_window ({self.dlq_window})")
        if problems:
            raise ConfigError("invalid pipeline settings:\n  - " + "\n  - ".join(problems))


def _coerce(kind: str, raw: object) -> object:
    if kind == "int":
        return int(raw)  # type: ignore[call-overload]
    if kind == "float":
        return float(raw)  # type: ignore[arg-type]
    if kind == "Path":
        return Path(str(raw)).expanduser().resolve()
    return str(raw)


def parse_currency_amounts(text: str) -> dict[str, dict[str, int]]:
    """``"JPY=150000000/40000000,EUR=1000000/250000"`` -> {currency: {min_payout_micros,
    fee_fixed_micros}}; raises ValueError naming the part that is wrong."""
    out: dict[str, dict[str, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        currency, _, amounts = part.partition("=")
        values = amounts.split("/")
        if not is_currency(currency) or len(values) != 2 or not all(v.strip().isdigit() for v in values):
            raise ValueError(f"{part!r}: expected CUR=min_payout_micros/fee_fixed_micros, e.g. JPY=150000000/40000000")
        out[currency] = dict(zip(CURRENCY_AMOUNTS, (int(v) for v in values), strict=True))
    return out


def _collect(cls: type, prefix: str, overrides: dict[str, object]) -> dict[str, object]:
    """Settings from ``<prefix><NAME>`` environment variables, then ``overrides``."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for f in fields(cls):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
        env_name = f"{prefix}{f.name.upper()}"
        for source, raw in ((env_name, os.environ.get(env_name)), (f.name, overrides.get(f.name))):
            if raw is None:
                continue
            try:
                values[f.name] = _coerce(kind, raw)
            except (TypeError, ValueError):
                problems.append(f"{source}={raw!r}: expected {kind}")
    if problems:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(problems))
    return values


def load_platform(**overrides: object) -> PlatformConfig:
    values = _collect(PlatformConfig, "TRIBUTARY_", overrides)
    cfg = PlatformConfig(**values)  # type: ignore[arg-type]
    cfg.validate()
    return cfg


def load_pipeline(**overrides: object) -> PipelineConfig:
    if "STRIPE_API_KEY" in os.environ and "stripe_api_key" not in overrides:
        overrides["stripe_api_key"] = os.environ["STRIPE_API_KEY"]
    values = _collect(PipelineConfig, "TRIBUTARY_", overrides)
    cfg = PipelineConfig(**values)  # type: ignore[arg-type]
    cfg.validate()
    return cfg
