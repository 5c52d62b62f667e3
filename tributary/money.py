"""Money helpers. Every amount is an integer number of micro-units (1 USD = 1_000_000).

No floats are used anywhere an amount is stored, summed or compared.
"""

from __future__ import annotations

from collections.abc import Mapping

MICROS_PER_UNIT = 1_000_000
MICROS_PER_CENT = 10_000
BPS_DENOMINATOR = 10_000
SHARE_DENOMINATOR = 1_000_000  # attribution shares are integer parts-per-million
UNATTRIBUTED = "escrow:unattributed"


def royalty_pool(revenue_micros: int, royalty_rate_bps: int) -> int:
    """The royalty pool of one event: revenue x rate, rounded down to the micro.

    Rounding down means the provider never owes more than the contract says; the
    rounded-off fraction of a micro is never credited to anyone.
    """
    if revenue_micros < 0:
        raise ValueError("revenue_micros must be >= 0")
    if not 0 <= royalty_rate_bps <= BPS_DENOMINATOR:
        raise ValueError("royalty_rate_bps must be within 0..10000")
    return revenue_micros * royalty_rate_bps // BPS_DENOMINATOR


def split_pool(pool_micros: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``pool_micros`` among ``weights`` by largest-remainder rounding.

    ``weights`` are non-negative integers (e.g. parts-per-million shares, with the
    unattributed part under :data:`UNATTRIBUTED`). The result always sums to
    ``pool_micros`` exactly. Ties in the remainder are broken by the account key in
    ascending order, so the split is deterministic for the same inputs.
    """
    if pool_micros < 0:
        raise ValueError("pool_micros must be >= 0")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0")
    total = sum(weights.values())
    if total == 0:
        raise ValueError("weights must not all be zero")
    floors: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for account, weight in weights.items():
        quotient, remainder = divmod(pool_micros * weight, total)
        floors[account] = quotient
        remainders.append((remainder, account))
    leftover = pool_micros - sum(floors.values())
    # largest remainder first; equal remainders go to the smaller account key
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, account in remainders[:leftover]:
        floors[account] += 1
    return floors


def whole_cents(amount_micros: int) -> int:
    """The largest amount <= ``amount_micros`` that is a whole number of cents."""
    return (amount_micros // MICROS_PER_CENT) * MICROS_PER_CENT


def format_micros(amount_micros: int, currency: str = "USD") -> str:
    sign = "-" if amount_micros < 0 else ""
    units, micros = divmod(abs(amount_micros), MICROS_PER_UNIT)
    return f"{sign}{units:,}.{micros:06d} {currency}"
