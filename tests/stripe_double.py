"""A stateful double of the Stripe Connect transfers API, written for the tests.

stripe-mock checks that our requests are valid but keeps no state: every transfer
list returns the same fixture and every create "succeeds". The money guarantees need
a Stripe that remembers: this double keeps transfers, honours idempotency keys the
way Stripe documents them (same key + same parameters -> the first response again;
same key + different parameters -> 400 ``idempotency_error``), keeps a platform
balance, knows restricted accounts, and injects failures on request:

    rate_limit         429, nothing created
    server_error       500, nothing created
    drop               the connection is closed before anything is created
    drop_after_create  the transfer is created, then the connection is closed
                       (the caller never learns the transfer id)
    lock_timeout       429 ``lock_timeout`` with ``Stripe-Should-Retry: true``, nothing created
    server_error_final 500 with ``Stripe-Should-Retry: false``, nothing created
    server_error_final_after_create
                       the transfer is created, then a 500 with ``Stripe-Should-Retry: false``

``prune_idempotency_keys()`` forgets every key, as Stripe does after 24 hours.

Connect accounts follow Stripe's Express lifecycle: ``POST /v1/accounts`` makes one whose
transfers capability is ``inactive`` with requirements due, Account Links and login links
are issued for it, and a transfer to it is refused (``insufficient_capabilities_for_transfer``)
until ``complete_onboarding(account)`` (the holder finished Stripe's hosted onboarding).
Destinations the double never created are taken as onboarded.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Transfer:
    id: str
    amount: int
    currency: str
    destination: str
    transfer_group: str | None
    metadata: dict[str, str]
    created: int

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "transfer", "amount": self.amount, "currency": self.currency,
                "destination": self.destination, "transfer_group": self.transfer_group,
                "metadata": self.metadata, "created": self.created, "livemode": False,
                "reversed": False, "amount_reversed": 0}


@dataclass
class ConnectDouble:
    balance_cents: int = 10**12
    restricted: set[str] = field(default_factory=set)
    transfers: list[Transfer] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    create_attempts: int = 0
    create_keys: list[str | None] = field(default_factory=list)  # the idempotency key of each attempt
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    _keys: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- test controls -------------------------------------------------------------
    def inject(self, *faults: str) -> None:
        """Faults for the next transfer creations, in order."""
        self.faults.extend(faults)

    def prune_idempotency_keys(self) -> None:
        with self._lock:
            self._keys.clear()

    def complete_onboarding(self, account: str) -> None:
        with self._lock:
            self.accounts[account].update(details_submitted=True, payouts_enabled=True,
                                          capabilities={"transfers": "active"},
                                          requirements={"currently_due": [], "past_due": [], "disabled_reason": None})

    def by_group(self) -> dict[str, list[Transfer]]:
        groups: dict[str, list[Transfer]] = {}
        for t in self.transfers:
            groups.setdefault(t.transfer_group or "", []).append(t)
        return groups

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ConnectDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any], replayed: bool = False,
                       should_retry: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{time.monotonic_ns()}")
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                if should_retry is not None:
                    self.send_header("Stripe-Should-Retry", should_retry)
                self.end_headers()
                self.wfile.write(data)

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.close()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                if url.path.startswith("/v1/accounts/"):
                    account = double.accounts.get(url.path.rsplit("/", 1)[1])
                    if account is None:
                        self._reply(404, _error("invalid_request_error", "resource_missing", "No such account"))
                    else:
                        self._reply(200, account)
                    return
                if url.path != "/v1/transfers":
                    self._reply(404, _error("invalid_request_error", "resource_missing", f"no {url.path}"))
                    return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                self._reply(200, double.list_transfers(query))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlparse(self.path).path
                if path in ("/v1/accounts", "/v1/account_links") or path.endswith("/login_links"):
                    self._reply(*double.accounts_api(path, form))
                    return
                if path != "/v1/transfers":
                    self._reply(404, _error("invalid_request_error", "resource_missing", self.path))
                    return
                status, body, replayed, fault = double.create_transfer(form, self.headers.get("Idempotency-Key"))
                if fault in ("drop", "drop_after_create"):
                    self._drop()
                    return
                should_retry = {"lock_timeout": "true", "server_error_final": "false",
                                "server_error_final_after_create": "false"}.get(fault or "")
                self._reply(status, body, replayed, should_retry)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the API -----------------------------------------------------------------
    def list_transfers(self, query: dict[str, str]) -> dict[str, Any]:
        limit = max(1, min(100, int(query.get("limit") or 10)))
        with self._lock:
            # newest first, as Stripe lists them
            found = [t for t in reversed(self.transfers)
                     if "transfer_group" not in query or t.transfer_group == query["transfer_group"]]
        if query.get("starting_after"):
            ids = [t.id for t in found]
            found = found[ids.index(query["starting_after"]) + 1:] if query["starting_after"] in ids else []
        page = found[:limit]
        return {"object": "list", "url": "/v1/transfers", "has_more": len(found) > limit,
                "data": [t.json() for t in page]}

    def accounts_api(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if path == "/v1/accounts":
                holder = form.get("metadata[holder_id]", "")
                found = [a for a in self.accounts.values() if a["metadata"].get("holder_id") == holder and holder]
                if found:  # the idempotency key is the holder id: the same account again
                    return 200, found[0]
                account = {"id": f"acct_double{next(self._ids):06d}", "object": "account",
                           "type": form.get("type"), "email": form.get("email"), "details_submitted": False,
                           "payouts_enabled": False, "capabilities": {"transfers": "inactive"},
                           "requirements": {"currently_due": ["external_account", "tos_acceptance.date"],
                                            "past_due": [], "disabled_reason": "requirements.past_due"},
                           "metadata": {"holder_id": holder}}
                self.accounts[account["id"]] = account
                return 200, account
            account_id = form.get("account") if path == "/v1/account_links" else path.split("/")[3]
            if account_id not in self.accounts:
                return 404, _error("invalid_request_error", "resource_missing", f"No such account: {account_id}")
            if path == "/v1/account_links":
                return 200, {"object": "account_link", "url": f"https://connect.double.invalid/setup/{account_id}",
                             "expires_at": int(time.time()) + 300, "created": int(time.time())}
            if not self.accounts[account_id]["details_submitted"]:
                return 400, _error("invalid_request_error", None, "Cannot create a login link for an account "
                                                                  "that has not completed onboarding.")
            return 200, {"object": "login_link", "url": f"https://connect.double.invalid/express/{account_id}",
                         "created": int(time.time())}

    def create_transfer(self, form: dict[str, str], key: str | None) -> tuple[int, dict[str, Any], bool, str | None]:
        """(status, body, replayed, fault) for one POST /v1/transfers."""
        params = {k: v for k, v in form.items()}
        with self._lock:
            self.create_attempts += 1
            self.create_keys.append(key)
            fault = self.faults.popleft() if self.faults else None
            if fault == "rate_limit":
                return 429, _error("invalid_request_error", "rate_limit", "Too many requests"), False, fault
            if fault == "lock_timeout":
                return 429, _error("invalid_request_error", "lock_timeout",
                                   "This object cannot be accessed right now because another API request "
                                   "or Stripe process is currently accessing it."), False, fault
            if fault in ("server_error", "server_error_final"):
                return 500, _error("api_error", None, "Something went wrong on Stripe's end"), False, fault
            if fault == "drop":
                return 0, {}, False, fault
            if key and key in self._keys:
                first_params, status, body = self._keys[key]
                if first_params != params:
                    return 400, _error("idempotency_error", None,
                                       "Keys for idempotent requests can only be used with the same "
                                       "parameters they were first used with."), False, fault
                return status, body, True, fault
            status, body = self._create(params)
            if fault == "server_error_final_after_create":
                status, body = 500, _error("api_error", None, "Something went wrong on Stripe's end")
            if key:
                self._keys[key] = (params, status, body)
            return status, body, False, fault

    def _create(self, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            amount = int(p["amount"])
        except (KeyError, ValueError):
            return 400, _error("invalid_request_error", "parameter_missing", "amount: a positive integer")
        if amount <= 0 or not p.get("currency") or not p.get("destination"):
            return 400, _error("invalid_request_error", "parameter_invalid_integer", "bad amount/currency/destination")
        known = self.accounts.get(p["destination"])
        if known is not None and known["capabilities"].get("transfers") != "active":
            return 400, _error("invalid_request_error", "insufficient_capabilities_for_transfer",
                               f"Your destination account {p['destination']} needs to have the transfers "
                               "capability enabled.")
        if p["destination"] in self.restricted:
            return 400, _error("invalid_request_error", "account_invalid",
                               f"The account {p['destination']} is restricted and cannot receive transfers.")
        if amount > self.balance_cents:
            return 400, _error("invalid_request_error", "balance_insufficient",
                               "You have insufficient available funds in your Stripe account.")
        self.balance_cents -= amount
        transfer = Transfer(
            id=f"tr_double{next(self._ids):06d}", amount=amount, currency=p["currency"],
            destination=p["destination"], transfer_group=p.get("transfer_group"),
            metadata={k[len("metadata["):-1]: v for k, v in p.items() if k.startswith("metadata[")},
            created=int(time.time()))
        self.transfers.append(transfer)
        return 200, transfer.json()


def _error(kind: str, code: str | None, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message}}
