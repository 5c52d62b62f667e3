"""Faust stream processors: ingest (validate, dedupe, price), accrue (split pools
into ledger entries) and balances (payout triggers). Agents are thin loops over the
pure functions in this package."""
