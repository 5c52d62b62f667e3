"""The holder portal's pure parts: sign-in links, sessions, CSRF, references, the marking
of copied words, the payout floor, and the error page. The pages themselves run against
the real pipeline, ClickHouse and Chromium in tests/integration/test_portal.py."""

from __future__ import annotations

from datetime import date

import pytest

from tributary.policy import PayoutPolicy
from tributary.portal import charts, data
from tributary.portal.auth import LinkError, Signer, load_secret

SECRET = "s" * 64


def test_a_sign_in_link_names_its_holder_until_it_expires():
    signer = Signer(SECRET)
    token = signer.signin_token("h-austen", ttl_s=60, now=1_000)
    assert signer.holder_of_link(token, now=1_059) == "h-austen"
    with pytest.raises(LinkError, match="expired"):
        signer.holder_of_link(token, now=1_060)


@pytest.mark.parametrize("damage", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature changed
    lambda t: t[: len(t) // 2],  # cut short
    lambda t: Signer("x" * 64).signin_token("h-austen"),  # signed with another secret
    lambda t: Signer(SECRET)._sessions.dumps({"h": "h-austen", "exp": 9e12, "c": "x"}),  # a session, not a link
])
def test_a_forged_or_damaged_link_signs_nobody_in(damage):
    signer = Signer(SECRET)
    with pytest.raises(LinkError, match="not valid"):
        signer.holder_of_link(damage(signer.signin_token("h-austen")))


def test_a_session_cookie_is_refused_when_forged_expired_or_a_link():
    signer = Signer(SECRET)
    session, cookie = signer.new_session("h-austen", now=1_000)
    assert signer.session(cookie, now=1_001) == session
    assert signer.session(cookie, now=session.expires_at) is None
    assert signer.session(cookie[:-3] + "abc", now=1_001) is None
    assert signer.session(signer.signin_token("h-austen"), now=1_001) is None
    assert signer.session(Signer("y" * 64).new_session("h-austen", now=1_000)[1], now=1_001) is None
    assert signer.session(None) is None


def test_forms_need_the_sessions_csrf_token():
    signer = Signer(SECRET)
    session, _ = signer.new_session("h-austen")
    other, _ = signer.new_session("h-austen")
    assert signer.csrf_ok(session, session.csrf)
    assert not signer.csrf_ok(session, other.csrf)
    assert not signer.csrf_ok(session, "")
    assert not signer.csrf_ok(session, None)


def test_a_reference_opens_only_for_the_holder_it_was_made_for():
    signer = Signer(SECRET)
    ref = signer.ref("h-austen", "po_0123")
    assert signer.unref("h-austen", ref) == "po_0123"
    assert signer.unref("h-dickens", ref) is None  # holder B cannot use holder A's link
    assert signer.unref("h-austen", "po_0123") is None  # a bare id is not a reference
    assert signer.unref("h-austen", ref[:-1] + ("0" if ref[-1] != "0" else "1")) is None
    assert signer.unref("h-dickens", signer.ref("h-dickens", "po_0123")) == "po_0123"


def test_the_local_secret_is_made_once_private_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("TRIBUTARY_PORTAL_SECRET", raising=False)
    first = load_secret(tmp_path)
    assert load_secret(tmp_path) == first and len(first) == 64
    assert (tmp_path / "portal-secret").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("TRIBUTARY_PORTAL_SECRET", "e" * 40)
    assert load_secret(tmp_path) == "e" * 40
    monkeypatch.setenv("TRIBUTARY_PORTAL_SECRET", "short")
    with pytest.raises(ValueError, match="at least 32"):
        load_secret(tmp_path)


def test_copied_words_are_marked_in_place_and_runs_join():
    text = "He said: the quick brown fox, then left."
    assert data.mark(text, {2, 3, 4, 5}) == [("He said: ", False), ("the quick brown fox", True),
                                             (", then left.", False)]
    assert "".join(t for t, _ in data.mark(text, {0, 6})) == text
    assert data.mark(text, set()) == [(text, False)]


def test_the_works_side_marks_the_runs_it_shares_with_the_output():
    output = "As she said, it is a truth universally acknowledged that a single man wants a wife."
    work = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    marked = data.mark(work, data._shared_shingle_words(output, work, 8))
    assert [t for t, m in marked if m] == ["It is a truth universally acknowledged, that a single man"]


def test_the_payout_floor_is_where_the_fee_rule_lets_a_payout_through():
    policy = PayoutPolicy()  # 1.00 minimum, 0.25 + 25 bps fee, at most 10% of the amount
    floor = data.payout_floor(policy)
    assert policy.blocked(floor, None) is None and policy.blocked(floor - 1, None) is not None
    cheap = PayoutPolicy(min_payout_micros=5_000_000, fee_fixed_micros=10_000)
    assert data.payout_floor(cheap) == 5_000_000


@pytest.mark.parametrize(("balance", "account", "policy", "expected"), [
    (data.Balance("USD", payable_micros=3_000_000), None, PayoutPolicy(), "is due"),
    (data.Balance("USD", payable_micros=500_000), None, PayoutPolicy(), "in about 21 day(s)"),
    (data.Balance("USD", payable_micros=3_000_000, reserved_micros=1_000_000), None, PayoutPolicy(), "being paid now"),
    (data.Balance("USD", payable_micros=3_000_000), {"transfers_ready": False, "reason": "identity document"},
     PayoutPolicy(), "identity document"),
    (data.Balance("USD", payable_micros=3_000_000), None, PayoutPolicy(paused=True), "paused"),
])
def test_the_next_payout_is_explained(balance, account, policy, expected):
    assert expected in data.next_payout(balance, policy, account, per_day=100_000)


def test_charts_keep_currencies_apart_and_fold_small_series():
    days = charts.day_range(date(2026, 12, 5), 3)
    rows = [(days[0], f"work {n}", 1_000 * (n + 1)) for n in range(9)]
    names, values = charts.series(rows, days)
    assert names[-1] == "other" and len(names) == charts.MAX_SERIES + 1
    assert sum(v[0] for v in values.values()) == sum(m for _, _, m in rows)
    svg = charts.stacked_bars("work", days, names, values, "EUR")
    assert svg.startswith("<svg") and 'role="img"' in svg and "EUR" in svg


def test_a_page_that_cannot_read_the_ledger_says_so_without_sql():
    from starlette.testclient import TestClient

    from tributary.portal.app import COOKIE, Portal, create_app

    def broken(sql, params):
        raise RuntimeError("DB::Exception: Syntax error near SELECT secret FROM ledger_entries")

    signer = Signer(SECRET)
    portal = Portal(run=broken, signer=signer, defaults=PayoutPolicy(), publish=lambda *a: None)
    client = TestClient(create_app(portal))
    _, cookie = signer.new_session("h-austen")
    client.cookies.set(COOKIE, cookie)
    for path in ("/", "/statements", "/payouts", "/credits", "/works", "/disputes"):
        page = client.get(path)
        assert page.status_code == 503, path
        assert "cannot be shown right now" in page.text and "incident" in page.text
        assert "SELECT" not in page.text and "DB::Exception" not in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
    client.cookies.clear()
    assert client.get("/").status_code == 401


def test_a_dispute_that_cannot_be_recorded_says_nothing_was_filed(monkeypatch):
    """The dispute form when Kafka does not take the record: a clear page, the holder's text
    kept, nothing filed. (Filing itself runs on the real broker in
    tests/integration/test_portal.py; a broker refusing it is only provoked here.)"""
    from starlette.testclient import TestClient

    from tributary.portal import app as portal_app

    ev = data.Evidence(credit={"entry_id": "le_1", "entry_type": "accrual", "event_id": "e1", "work_id": "w1",
                               "currency": "USD", "amount_micros": 5, "title": "W", "model": "m",
                               "contract_id": "c", "contract_version": 1, "created_at": "2026-12-01"},
                       share={"tier": "probable", "share_ppm": 10, "words": 3}, attribution={}, pairs=[],
                       calibration={}, pool_micros=10, provider="p", decision="", dispute=None, quotes_dropped=False)
    monkeypatch.setattr(portal_app.data, "evidence", lambda run, holder, entry: ev)

    def down(topic, key, record):
        raise RuntimeError("Kafka at 127.0.0.1:19092 did not acknowledge")

    signer = Signer(SECRET)
    client = TestClient(portal_app.create_app(portal_app.Portal(run=lambda s, p: ([], []), signer=signer,
                                                                defaults=PayoutPolicy(), publish=down)))
    session, cookie = signer.new_session("h-austen")
    client.cookies.set(portal_app.COOKIE, cookie)
    page = client.post(f"/credits/{signer.ref('h-austen', 'le_1')}/dispute",
                       data={"csrf": session.csrf, "reason": "not from my work"}, follow_redirects=False)
    assert page.status_code == 503 and "nothing was filed" in page.text and "not from my work" in page.text
    assert "Kafka" not in page.text


def test_a_holder_is_shown_only_their_own_works_passage():
    """A sentence credited to two works (a tie, or a phrase both contain) carries one passage
    per work; each holder sees their own. Evidence from before kept one passage: it is shown
    only when the sentence had that one work."""
    ev = {"sentences": [[0, 6]], "span_rule": {"shingle_words": 8}, "copied": [],
          "matches": [{"sentence": 0, "words": 6, "method": "semantic", "tier": "probable", "works": ["w-a", "w-b"],
                       "text": "the output sentence here", "work_texts": {"w-a": "A's passage", "w-b": "B's passage"}},
                      {"sentence": 0, "words": 6, "method": "semantic", "tier": "probable", "works": ["w-a", "w-b"],
                       "text": "an older row", "work_text": "B's passage"}]}
    new, old = data.pairs(ev, "w-a")
    assert "".join(t for t, _ in new.work) == "A's passage"
    assert old.work == []  # not A's to see
    assert "".join(t for t, _ in data.pairs(ev, "w-b")[0].work) == "B's passage"


def test_the_share_an_accrual_paid_is_told_from_its_entry_id():
    from tributary import ledger

    certain = {"holder_id": "h", "work_id": "w", "tier": "certain", "share_ppm": 600_000}
    probable = {"holder_id": "h", "work_id": "w", "tier": "probable", "share_ppm": 100_000}
    for share in (certain, probable):
        entry = ledger.accrual_entry_id("at_1", ledger.share_key("h", "w", share["tier"]))
        assert data.entry_share("at_1", entry, [certain, probable]) is share
    assert data.entry_share("at_1", "le_reversal", [certain, probable]) is None  # a reversal names its own source
    assert data.entry_share("at_1", "le_reversal", [certain]) is certain


def test_a_currency_in_the_address_is_checked_never_echoed():
    from starlette.testclient import TestClient

    from tributary.portal.app import COOKIE, Portal, create_app

    def run(sql, params):  # a holder with money in EUR only
        if "currentDatabase()" in sql:
            return ["db"], [["default"]]
        if "DISTINCT currency" in sql:
            return ["currency"], [["EUR"]]
        if "FROM account_balances" in sql:
            return [], [[f"holder:{params['holder']}:payable", "EUR", 5]]
        return [], []

    signer = Signer(SECRET)
    client = TestClient(create_app(Portal(run=run, signer=signer, defaults=PayoutPolicy(), publish=lambda *a: None)))
    client.cookies.set(COOKIE, signer.new_session("h-austen")[1])
    hostile = '"><h1 id=pwn>x</h1>'
    for path in ("/", "/statements", "/statements/statement.csv"):
        page = client.get(path, params={"currency": hostile})
        assert page.status_code == 400 and "that currency" in page.text, path
        assert "<h1 id=pwn>" not in page.text and "pwn" not in page.text
    page = client.get("/", params={"currency": "JPY"})
    assert page.status_code == 400 and "JPY: you have money in EUR" in page.text
    assert client.get("/", params={"currency": "EUR"}).status_code == 200


def test_the_sink_keeps_policies_disputes_and_withdrawals_without_losing_the_work():
    import json

    from sinks.clickhouse.rows import to_rows

    policy = {"schema_version": 1, "holder_id": "h-austen", "min_payout_micros": 5}
    converted = to_rows("holder-policies", 3, 7, json.dumps(policy).encode())
    table, [row] = converted.table, converted.dicts()
    assert (table, row["policy_key"], row["kind"], row["source_offset"]) == ("holder_policies", "h-austen", "policy", 7)
    account = {"kind": "account", "holder_id": "h-austen", "transfers_ready": False}
    assert to_rows("holder-policies", 3, 8, json.dumps(account).encode()).dicts()[0]["policy_key"] == "h-austen#account"
    removal = {"schema_version": 1, "kind": "work_removed", "work_id": "w-emma", "title": "rights reverted"}
    converted = to_rows("catalog-updates", 0, 9, json.dumps(removal).encode())
    table, [row] = converted.table, converted.dicts()
    assert table == "work_withdrawals" and row == {"work_id": "w-emma", "reason": "rights reverted", "catalog_offset": 9}


def test_words_copied_from_a_work_are_shown_where_another_work_owns_the_sentence():
    """A holder paid for words copied inside a sentence decided for another work sees that
    sentence, their words marked (found on a trial with the Apache and Mozilla licences)."""
    ev = {"sentences": [[0, 6], [6, 4]], "span_rule": {"shingle_words": 8},
          "copied": [{"work_id": "w-b", "spans": [[2, 5]], "chunk_ids": []}],
          "matches": [{"sentence": 0, "words": 6, "method": "copied", "tier": "certain", "works": ["w-a"],
                       "text": "one two three four five six"},
                      {"sentence": 1, "words": 4, "method": "copied", "tier": "certain", "works": ["w-a"],
                       "text": "seven eight nine ten"}]}
    [pair] = data.pairs(ev, "w-b")
    assert [t for t, m in pair.output if m] == ["three four five"] and pair.work == []
    assert len(data.pairs(ev, "w-a")) == 2
