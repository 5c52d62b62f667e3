"""Sinks: the ClickHouse writer analysts read from, and the Stripe Connect payout sink."""
