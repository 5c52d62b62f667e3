"""The one place topic names live. Topics are the contract between stages."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    INFERENCE_EVENTS = "inference-events"
    INFERENCE_EVENTS_DLQ = "inference-events.dlq"
    SINK_CLICKHOUSE_DLQ = "sink-clickhouse.dlq"
    ATTRIBUTION_REQUESTS = "attribution-requests"
    ATTRIBUTIONS = "attributions"
    ROYALTY_LEDGER = "royalty-ledger"
    PAYOUT_REQUESTS = "payout-requests"
    PAYOUT_RESULTS = "payout-results"
    HOLDER_POLICIES = "holder-policies"
    CORRECTIONS = "corrections"
    CATALOG_UPDATES = "catalog-updates"
    CATALOG_CHUNKS = "catalog-chunks"
    CONTRACTS = "contracts"
    REVIEW_REQUESTS = "review-requests"  # holders' disputes, from the portal
    ACCRUE_STATE = "accrue-state"  # internal state of the money stages (streams.money)
    BALANCES_STATE = "balances-state"
