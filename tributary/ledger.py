"""The ledger: a chart of accounts, one builder per entry kind, and the flows an entry
may post. Every stage that posts (accrue, balances, the Stripe sink) builds its
entries here; none builds an account name or an entry of its own.

Invariants (each is checked where it can break, and tested):

1. **Every entry balances.** An entry moves ``amount_micros`` (never negative: ``check``)
   from one account (``debit_account``) to another (``credit_account``) in one currency,
   so every currency's debits equal its credits by construction (there is no one-sided
   entry to check for; the trial balance checks what can go wrong: the sides accounts
   stand on and the reservations).
2. **Every entry is a permitted flow.** A balanced entry can still be nonsense (paying
   escrow out, reserving a provider's liability): :data:`FLOWS` lists, per entry type,
   the (from, to) account kinds it may move money between, and :func:`check` refuses
   anything else, including holder accounts that are not the entry's holder.
3. **Append-only.** Corrections are new entries (reversals), never edits; entry ids
   derive from their source ids, so a replay posts the same ids.
4. **Balances are projections.** Each account's balance is the sum of its entries
   (:func:`trial_balance`); a holder's payable, reserved and paid amounts are the
   balances of their three accounts. A payout reservation is posted when the request is
   issued (payable -> reserved, with the request in the same Kafka transaction) and
   settled by the outcome (reserved -> paid, or reserved -> payable on a permanent
   failure), so once every payout has an outcome every reserved account is zero.

Account names (``account_kind`` parses them back):

    provider:<provider>:royalty_liability  what a provider owes under its contracts (debit side)
    holder:<holder_id>:payable             earned, not yet reserved for a payout
    holder:<holder_id>:reserved            in a payout request awaiting its outcome
    holder:<holder_id>:paid                paid out by a Stripe transfer
    escrow:unattributed                    the part of every pool no registered work earned
    escrow:review                          the held part of probable shares, until a review

There is no fee account: Stripe's Connect fees are the platform's cost, not the
holder's; the payout policy only estimates them to decide when a payout is worth it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypedDict

from tributary.ids import ledger_entry_id
from tributary.money import UNATTRIBUTED

SCHEMA_VERSION = 1


class Kind(StrEnum):
    """The kind of an account; the flows are stated between kinds."""

    PROVIDER_LIABILITY = "provider_liability"
    HOLDER_PAYABLE = "holder_payable"
    HOLDER_RESERVED = "holder_reserved"
    HOLDER_PAID = "holder_paid"
    ESCROW_UNATTRIBUTED = "escrow_unattributed"
    ESCROW_REVIEW = "escrow_review"


ESCROW_UNATTRIBUTED = UNATTRIBUTED
ESCROW_REVIEW = "escrow:review"
_HOLDER_SUFFIX = {"payable": Kind.HOLDER_PAYABLE, "reserved": Kind.HOLDER_RESERVED, "paid": Kind.HOLDER_PAID}


def provider_liability(provider: str) -> str:
    return f"provider:{provider}:royalty_liability"


def holder_payable(holder_id: str) -> str:
    return f"holder:{holder_id}:payable"


def holder_reserved(holder_id: str) -> str:
    return f"holder:{holder_id}:reserved"


def holder_paid(holder_id: str) -> str:
    return f"holder:{holder_id}:paid"


class InvalidEntry(ValueError):
    """An entry the ledger refuses: unbalanced, an unknown account or a flow not permitted."""


@lru_cache(maxsize=1 << 16)  # accounts repeat: every entry of a holder names the same few
def account_kind(account: str) -> tuple[Kind, str | None]:
    """The kind of ``account`` and the holder it belongs to (None for provider and escrow
    accounts). Raises InvalidEntry for a name outside the chart."""
    if account == ESCROW_UNATTRIBUTED:
        return Kind.ESCROW_UNATTRIBUTED, None
    if account == ESCROW_REVIEW:
        return Kind.ESCROW_REVIEW, None
    if account.startswith("holder:"):
        holder, _, suffix = account[7:].rpartition(":")
        kind = _HOLDER_SUFFIX.get(suffix)
        if kind is not None and holder:
            return kind, holder
    elif account.startswith("provider:") and account.endswith(":royalty_liability") and len(account) > 27:
        return Kind.PROVIDER_LIABILITY, None
    raise InvalidEntry(f"account {account!r} is not in the chart of accounts")


_EARNED = (Kind.HOLDER_PAYABLE, Kind.ESCROW_UNATTRIBUTED, Kind.ESCROW_REVIEW)

# entry type -> the (debit kind, credit kind) pairs it may post
FLOWS: dict[str, frozenset[tuple[Kind, Kind]]] = {
    # a pool split: the provider's liability to a holder, to unattributed escrow, or held for review
    "accrual": frozenset((Kind.PROVIDER_LIABILITY, k) for k in _EARNED),
    # a refund or a review decision taking an accrual back
    "accrual_reversal": frozenset((k, Kind.PROVIDER_LIABILITY) for k in _EARNED),
    # a payout request reserves the holder's payable amount
    "reservation": frozenset({(Kind.HOLDER_PAYABLE, Kind.HOLDER_RESERVED)}),
    # the transfer was made
    "payout": frozenset({(Kind.HOLDER_RESERVED, Kind.HOLDER_PAID)}),
    # the transfer failed for good: the reservation returns to the holder's balance
    "payout_reversal": frozenset({(Kind.HOLDER_RESERVED, Kind.HOLDER_PAYABLE)}),
}
ENTRY_TYPES = tuple(FLOWS)
PAYOUT_OUTCOMES = ("payout", "payout_reversal")

# the side on which an account's balance (credits - debits) normally stands: +1 credit, -1 debit.
# A holder's payable may go below zero when a review takes back an accrual already paid out
# (the holder owes it until new earnings cover it), so it is not listed.
NORMAL_SIDE: Mapping[Kind, int] = {
    Kind.PROVIDER_LIABILITY: -1,
    Kind.HOLDER_RESERVED: 1,
    Kind.HOLDER_PAID: 1,
    Kind.ESCROW_UNATTRIBUTED: 1,
    Kind.ESCROW_REVIEW: 1,
}


_ESCROW = {Kind.ESCROW_UNATTRIBUTED: ESCROW_UNATTRIBUTED, Kind.ESCROW_REVIEW: ESCROW_REVIEW}


class LedgerEntry(TypedDict):
    """One ledger line, as on ``royalty-ledger`` (schemas/json/ledger-entry.v1.json)."""

    schema_version: int
    entry_id: str
    entry_type: str
    debit_account: str
    credit_account: str
    amount_micros: int
    currency: str
    holder_id: str
    work_id: str | None
    event_id: str | None
    source_id: str
    contract_id: str | None
    contract_version: int | None
    attribution_id: str | None
    payout_id: str | None
    transfer_id: str | None
    created_at: str


def check(entry: LedgerEntry) -> LedgerEntry:
    """``entry`` if the ledger may post it; raises InvalidEntry naming what is wrong."""
    kind = entry["entry_type"]
    flows = FLOWS.get(kind)
    if flows is None:
        raise InvalidEntry(f"entry {entry['entry_id']}: unknown entry_type {kind!r}")
    if entry["amount_micros"] < 0:
        raise InvalidEntry(f"entry {entry['entry_id']}: amount_micros {entry['amount_micros']} is negative")
    debit, debit_holder = account_kind(entry["debit_account"])
    credit, credit_holder = account_kind(entry["credit_account"])
    if (debit, credit) not in flows:
        raise InvalidEntry(f"entry {entry['entry_id']}: {kind} may not move money from {debit} "
                           f"({entry['debit_account']}) to {credit} ({entry['credit_account']})")
    for holder in (debit_holder, credit_holder):
        if holder is not None and holder != entry["holder_id"]:
            raise InvalidEntry(f"entry {entry['entry_id']}: account of holder {holder} on an entry of "
                               f"holder {entry['holder_id']}")
    for side in (debit, credit):
        if side in _ESCROW and entry["holder_id"] != _ESCROW[side]:
            raise InvalidEntry(f"entry {entry['entry_id']}: an entry on {_ESCROW[side]} must name it as its holder_id")
    return entry


def _entry(entry_type: str, entry_id: str, source_id: str, debit: str, credit: str, amount: int, holder_id: str,
           currency: str, created_at: str, **fields: Any) -> LedgerEntry:
    entry: LedgerEntry = {
        "schema_version": SCHEMA_VERSION,
        "entry_id": entry_id,
        "entry_type": entry_type,
        "debit_account": debit,
        "credit_account": credit,
        "amount_micros": amount,
        "currency": currency,
        "holder_id": holder_id,
        "work_id": fields.get("work_id"),
        "event_id": fields.get("event_id"),
        "source_id": source_id,
        "contract_id": fields.get("contract_id"),
        "contract_version": fields.get("contract_version"),
        "attribution_id": fields.get("attribution_id"),
        "payout_id": fields.get("payout_id"),
        "transfer_id": fields.get("transfer_id"),
        "created_at": created_at,
    }
    return check(entry)


# --- accruals ---------------------------------------------------------------------------

PROBABLE = "probable"


def share_key(holder_id: str, work_id: str, tier: str) -> str:
    """The part of a pool one (holder, work, tier) share earns; an accrual's entry id derives
    from it (``ledger_entry_id(attribution_id, share_key(...), "accrual")``), so the tier of
    an entry can be told from its id."""
    return f"{holder_id}\x1f{work_id}" + ("\x1fprobable" if tier == PROBABLE else "")


def accrual_entry_id(attribution_id: str, key: str, part: str = "accrual") -> str:
    """The id of the accrual of one slice (``part``: "accrual" paid at once, "held" for review)."""
    return ledger_entry_id(attribution_id, key, part)


def earned_account(holder_id: str) -> str:
    """Where an accrual to ``holder_id`` is credited: the holder's payable, or the escrow
    account itself when the "holder" is one of the escrow accounts."""
    return holder_id if holder_id in (ESCROW_UNATTRIBUTED, ESCROW_REVIEW) else holder_payable(holder_id)


def accrual(attribution: Mapping[str, Any], entry_id: str, source_id: str, holder_id: str, work_id: str | None,
            amount: int, created_at: str, *, reversal: bool = False) -> LedgerEntry:
    """The provider's liability -> ``holder_id``'s earned account (or back, for a reversal),
    for one part of ``attribution``'s pool; ``source_id`` is the attribution or the
    correction (a review decision) that posts it."""
    contract = attribution["contract"]
    liability, earned = provider_liability(attribution["provider"]), earned_account(holder_id)
    debit, credit = (earned, liability) if reversal else (liability, earned)
    return _entry("accrual_reversal" if reversal else "accrual", entry_id, source_id, debit, credit, amount, holder_id,
                  contract["currency"], created_at, work_id=work_id, event_id=attribution["event_id"],
                  contract_id=contract["contract_id"], contract_version=contract["version"],
                  attribution_id=attribution["attribution_id"])


def reversal_of(entry: LedgerEntry, source_id: str, created_at: str) -> LedgerEntry:
    """The entry that cancels an accrual (or accrual reversal) exactly: same accounts and
    amount, sides swapped, its id derived from ``source_id`` (the correction)."""
    kind = "accrual_reversal" if entry["entry_type"] == "accrual" else "accrual"
    return check({
        **entry,
        "entry_id": ledger_entry_id(source_id, entry["entry_id"], "accrual_reversal"),
        "entry_type": kind,
        "debit_account": entry["credit_account"],
        "credit_account": entry["debit_account"],
        "source_id": source_id,
        "created_at": created_at,
    })


# --- payouts ----------------------------------------------------------------------------

def reservation(request: Mapping[str, Any]) -> LedgerEntry:
    """A payout request reserves its amount: holder payable -> reserved (posted with the request)."""
    holder = request["holder_id"]
    payout = request["payout_id"]
    return _entry("reservation", ledger_entry_id(payout, holder, "reservation"), payout, holder_payable(holder), holder_reserved(holder),
                  int(request["amount_micros"]), holder, request["currency"], request["requested_at"],
                  payout_id=request["payout_id"])


def payout_outcome(result: Mapping[str, Any], currency: str, created_at: str) -> LedgerEntry:
    """A payout's outcome. paid: reserved -> paid, with the transfer id. failed: reserved ->
    payable (a payout reversal), so the amount is on the holder's balance again."""
    holder = result["holder_id"]
    paid = result["status"] == "paid"
    kind, payout = ("payout" if paid else "payout_reversal"), result["payout_id"]
    return _entry(kind, ledger_entry_id(payout, holder, kind), payout, holder_reserved(holder),
                  holder_paid(holder) if paid else holder_payable(holder), int(result["amount_micros"]), holder,
                  currency, created_at, payout_id=result["payout_id"], transfer_id=result.get("transfer_id"))


# --- projections ------------------------------------------------------------------------

def trial_balance(entries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """(account, currency) -> balance (credits - debits), from entries."""
    balances: dict[tuple[str, str], int] = {}
    for e in entries:
        amount, currency = int(e["amount_micros"]), e["currency"]
        debit, credit = (e["debit_account"], currency), (e["credit_account"], currency)
        balances[debit] = balances.get(debit, 0) - amount
        balances[credit] = balances.get(credit, 0) + amount
    return balances


def problems(balances: Mapping[tuple[str, str], int], pending: Mapping[tuple[str, str], int] | None = None) -> list[str]:
    """What keeps the trial balance from closing, each with what it means; [] when it closes.

    ``balances``: (account, currency) -> credits - debits. ``pending``: (holder_id, currency)
    -> the amount of payout requests still awaiting an outcome; when given, every holder's
    reserved account must equal it (and be zero where nothing is pending)."""
    out = []
    for (account, currency), balance in sorted(balances.items()):
        try:
            kind, holder = account_kind(account)
        except InvalidEntry as exc:
            out.append(f"{currency} {exc}")
            continue
        side = NORMAL_SIDE.get(kind)
        if side is not None and balance * side < 0:
            out.append(f"{currency} {account}: balance {balance} is on the wrong side for a {kind} account")
        if kind is Kind.HOLDER_RESERVED and pending is not None and holder is not None:
            expected = pending.get((holder, currency), 0)
            if balance != expected:
                out.append(f"{currency} {account}: reserved {balance} but payouts awaiting an outcome "
                           f"total {expected}")
    if pending is not None:
        for (holder, currency), amount in sorted(pending.items()):
            if amount and (holder_reserved(holder), currency) not in balances:
                out.append(f"{currency} {holder_reserved(holder)}: payouts of {amount} await an outcome "
                           "but nothing was reserved")
    return out
