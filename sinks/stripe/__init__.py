"""Stripe Connect payout sink: payout-requests -> transfers -> payout-results + ledger."""
