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


# Stripe's minor units (https://docs.stripe.com/currencies). Amounts are micros of the
# currency's *major* unit everywhere (1 JPY = 1,000,000 micros, like 1 USD); only the
# Stripe API speaks minor units, and only some amounts are payable:
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV",
                          "XAF", "XOF", "XPF"})
# three decimals in the API, and Stripe wants the last one 0 (a multiple of 10 minor units)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# two decimals in the API, but only whole units are payable (ISK, UGX: legacy two-decimal
# representation of a zero-decimal currency; HUF, TWD: payouts in whole units)
WHOLE_UNITS_ONLY = frozenset({"HUF", "ISK", "TWD", "UGX"})


def is_currency(code: object) -> bool:
    return isinstance(code, str) and len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def minor_unit_micros(currency: str) -> int:
    """Micros per unit of the Stripe API's ``amount`` in ``currency``: 10,000 for USD
    (cents), 1,000,000 for JPY, 1,000 for BHD."""
    if currency in ZERO_DECIMAL:
        return MICROS_PER_UNIT
    if currency in THREE_DECIMAL:
        return 1_000
    return MICROS_PER_CENT


def payable_step_micros(currency: str) -> int:
    """The smallest amount a payout in ``currency`` can move: a cent, a yen, ten fils."""
    if currency in ZERO_DECIMAL or currency in WHOLE_UNITS_ONLY:
        return MICROS_PER_UNIT
    if currency in THREE_DECIMAL:
        return 10_000
    return MICROS_PER_CENT


def payable(amount_micros: int, currency: str) -> int:
    """The largest payable amount <= ``amount_micros`` in ``currency``; the rest stays on the balance."""
    step = payable_step_micros(currency)
    return (amount_micros // step) * step


def to_stripe_amount(amount_micros: int, currency: str) -> int:
    """``amount_micros`` as the Stripe API's integer ``amount``; raises ValueError when it
    is not payable as it is (the caller rounds with :func:`payable` first)."""
    if amount_micros % payable_step_micros(currency):
        raise ValueError(f"{amount_micros} micros is not a payable amount of {currency} "
                         f"(a multiple of {payable_step_micros(currency)} micros)")
    return amount_micros // minor_unit_micros(currency)


def from_stripe_amount(amount: int, currency: str) -> int:
    """A Stripe API ``amount`` in ``currency`` as micros."""
    return amount * minor_unit_micros(currency.upper())


def format_micros(amount_micros: int, currency: str = "USD") -> str:
    """Exact, never rounded: every micro shows (``1,234.500000 JPY``)."""
    sign = "-" if amount_micros < 0 else ""
    units, micros = divmod(abs(amount_micros), MICROS_PER_UNIT)
    return f"{sign}{units:,}.{micros:06d} {currency}"
