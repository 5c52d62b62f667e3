"""The holder portal, used the way a rights holder uses it: a real headless Chromium
(Debian's ``chromium``, driven by Playwright; no browser download) signs in by link and
opens every page of a portal that reads what the real pipeline wrote (Kafka, the Faust
ingest, the real embedding model, the money loops, chdb, stripe-mock).

Every figure a page shows is compared with the journal read back from Kafka (the
``royalty-ledger`` topic, not ClickHouse), so a page that summed the wrong rows fails.
Screenshots of each page go to ``<test data dir>/portal-screenshots``."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from producers.sdk import EventProducer
from tests.conftest import reset_platform
from tributary import demo, ledger
from tributary.cli import main
from tributary.config import PlatformConfig, load_pipeline
from tributary.money import format_micros
from tributary.platform import local
from tributary.portal.app import COOKIE
from tributary.portal.auth import Signer, load_secret
from tributary.query import query, scalar
from tributary.sample import plan_events
from tributary.topics import Topic

from .checks import cli_args, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.stripe, pytest.mark.model,
              pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVENTS = 240
ENV = {"TRIBUTARY_PAYOUT_THRESHOLD_MICROS": "200000", "TRIBUTARY_PAYOUT_FEE_FIXED_MICROS": "10000",
       "TRIBUTARY_PAYOUT_CURRENCIES": "JPY=5000000/100000"}
# a second version of every sample contract that pays 40% of a probable share at once and
# holds the rest for review, so "under review" has money in it
HOLD_PROBABLE_BPS = 4000


def holding_contracts() -> list[dict]:
    from streams.contracts import DEFAULT_CONTRACTS

    contracts = json.loads(DEFAULT_CONTRACTS.read_text())
    contracts = contracts.get("contracts", contracts) if isinstance(contracts, dict) else contracts
    return [{**c, "version": c["version"] + 1, "probable_weight_bps": HOLD_PROBABLE_BPS} for c in contracts]


@dataclass
class World:
    cfg: PlatformConfig
    sample: dict
    signer: Signer
    base: str
    shots: Path

    def link(self, holder: str, ttl_s: int = 3600) -> str:
        return f"{self.base}/signin?token={self.signer.signin_token(holder, ttl_s)}"

    def journal(self) -> list[dict]:
        """Every ledger entry, once, read back from Kafka (read_committed)."""
        return list({e["entry_id"]: e for e in read_topic(self.cfg, Topic.ROYALTY_LEDGER)}.values())

    def works_of(self, holder: str) -> set[str]:
        return {w["work_id"] for w in self.sample["works"] if w["holder_id"] == holder}


@pytest.fixture(scope="module")
def world(platform_cfg, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed for the portal tests: apt-get install -y chromium "
                    "(`make test` installs it through `make browser`)")
    cfg = platform_cfg
    reset_platform(cfg)
    contract_file = tmp_path_factory.mktemp("contracts") / "holding.json"
    contract_file.write_text(json.dumps(holding_contracts()))
    assert main([*cli_args(cfg), "contracts", "add", str(contract_file)]) == 0
    demo.start_stages(cfg, log=lambda m: None, env=ENV)
    demo.start_stage(cfg, local.PORTAL, ENV)
    try:
        sample = demo.register_and_index(cfg, load_pipeline(), 600, log=lambda m: None)
        planned = plan_events(sample, EVENTS, seed=23)
        refunds = demo.refund_plan(planned)
        with EventProducer(cfg.bootstrap_servers) as producer:
            for item in planned:
                producer.emit(item.event)
            for refund in refunds:
                producer.refund(refund)
            assert producer.flush(60) == 0
        demo.wait_for(cfg, "pipeline", demo.settle_probe(cfg, EVENTS, 0, len(refunds)), timeout=900, log=print)
        assert scalar(cfg, "SELECT countIf(contract_version = 2) = count() FROM priced_events FINAL") == 1
        demo.wait_for(cfg, "portal", lambda: (local.stage_health(cfg, local.PORTAL) is None, "starting", None),
                      timeout=60, log=lambda m: None)
        shots = Path(os.environ.get("TRIBUTARY_TEST_DATA_DIR") or cfg.data_dir) / "portal-screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        yield World(cfg, sample, Signer(load_secret(cfg.run_dir)), f"http://127.0.0.1:{cfg.portal_port}", shots)
    finally:
        for stage in local.PROCESSES:
            local.stage_process(cfg, stage).stop(timeout=20)


@pytest.fixture(scope="module")
def browser(world):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def signed_in(world, browser, holder):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(world.link(holder))
    assert page.url == f"{world.base}/", page.url
    return page


def holders_with_money(world) -> list[str]:
    return sorted({e["holder_id"] for e in world.journal() if not e["holder_id"].startswith("escrow:")})


def cookie_of(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE)


def expected_balances(world, holder: str) -> dict[str, dict[str, int]]:
    """Per currency, from the journal: the holder's three accounts, what was credited net
    of reversals, and what escrow:review holds for the holder's works."""
    journal = world.journal()
    balances = ledger.trial_balance(journal)
    out: dict[str, dict[str, int]] = {}
    for e in journal:
        mine = e["holder_id"] == holder
        held = e["holder_id"] == ledger.ESCROW_REVIEW and e.get("work_id") in world.works_of(holder)
        if not (mine or held):
            continue
        f = out.setdefault(e["currency"], {"accrued": 0, "under_review": 0})
        sign = -1 if e["entry_type"] == "accrual_reversal" else 1
        if mine and e["entry_type"] in ("accrual", "accrual_reversal"):
            f["accrued"] += sign * e["amount_micros"]
        if held:
            f["under_review"] += sign * e["amount_micros"]
    for currency, f in out.items():
        f["payable"] = balances.get((ledger.holder_payable(holder), currency), 0)
        f["reserved"] = balances.get((ledger.holder_reserved(holder), currency), 0)
        f["paid"] = balances.get((ledger.holder_paid(holder), currency), 0)
    return out


# -- signing in ---------------------------------------------------------------------------------
def test_a_holder_signs_in_by_link_and_bad_links_fail(world, browser):
    holder = world.sample["holders"][0]
    page = signed_in(world, browser, holder["holder_id"])
    assert page.locator("h1").inner_text() == holder["name"]
    page.screenshot(path=str(world.shots / "overview.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    assert "You are signed out" in page.content()
    assert page.goto(f"{world.base}/payouts").status == 401  # the cookie is gone

    fresh = browser.new_page()
    expired = world.signer.signin_token(holder["holder_id"], ttl_s=1, now=time.time() - 10)
    response = fresh.goto(f"{world.base}/signin?token={expired}")
    assert response.status == 403 and "this sign-in link has expired" in fresh.content()
    good = world.signer.signin_token(holder["holder_id"])
    response = fresh.goto(f"{world.base}/signin?token={good[:-4]}AAAA")
    assert response.status == 403 and "is not valid" in fresh.content()
    other = Signer("another secret that is long enough to sign with!!").signin_token(holder["holder_id"])
    assert fresh.goto(f"{world.base}/signin?token={other}").status == 403
    fresh.screenshot(path=str(world.shots / "signin-refused.png"))
    assert fresh.goto(f"{world.base}/").status == 401
    metrics = httpx.get(f"{world.base}/metrics").text  # what operators scrape
    assert 'tributary_portal_signins_total{outcome="refused"}' in metrics
    assert 'tributary_portal_signins_total{outcome="ok"}' in metrics
    assert httpx.get(f"{world.base}/readyz").json() == {"ready": True}


def test_make_demo_style_links_come_from_the_cli(world, capsys):
    holder = world.sample["holders"][1]["holder_id"]
    capsys.readouterr()
    assert main([*cli_args(world.cfg), "--portal-port", str(world.cfg.portal_port), "portal", "link", holder,
                 "--ttl-hours", "1"]) == 0
    url = capsys.readouterr().out.strip()
    with httpx.Client(follow_redirects=False) as client:
        answer = client.get(url)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert client.get(f"{world.base}/").status_code == 200
    assert main([*cli_args(world.cfg), "portal", "link", "h-nobody"]) == 1
    assert "no holder 'h-nobody'" in capsys.readouterr().err


# -- every figure equals the ledger's ---------------------------------------------------------------
def test_every_balance_on_the_overview_equals_the_journal(world, browser):
    held_somewhere = False
    for holder in holders_with_money(world):
        page = signed_in(world, browser, holder)
        expected = expected_balances(world, holder)
        shown = {t.get_attribute("data-currency") for t in page.locator("table[data-currency]").all()}
        assert shown == set(expected), holder
        for currency, figures in expected.items():
            assert figures["payable"] + figures["reserved"] + figures["paid"] == figures["accrued"]
            table = page.locator(f"table[data-currency='{currency}']")
            for name, micros in figures.items():
                cell = table.locator(f"[data-figure='{name}']").inner_text()
                assert cell == format_micros(micros, currency), (holder, currency, name)
            assert page.locator(f"[data-next='{currency}']").inner_text().startswith("Next payout:")
            held_somewhere |= figures["under_review"] > 0
        assert page.locator("svg.chart").count() == 2  # by work and by model
        page.context.close()
    assert held_somewhere, "every contract's v2 holds part of each probable share: some must be under review"


def test_statements_download_with_the_ledgers_numbers(world, browser):
    paid = {(e["holder_id"], e["currency"]) for e in world.journal() if e["entry_type"] == "payout"}
    holder, currency = sorted(paid)[0]
    figures = expected_balances(world, holder)[currency]
    page = signed_in(world, browser, holder)
    page.goto(f"{world.base}/statements?currency={currency}")
    page.screenshot(path=str(world.shots / "statements.png"), full_page=True)
    summary = dict(r.locator("th, td").all_inner_texts() for r in page.locator("#statement-summary tr").all())
    assert summary["Unpaid balance carried forward"] == format_micros(figures["payable"] + figures["reserved"], currency)
    assert summary["Paid out"] == format_micros(-figures["paid"], currency)
    with page.expect_download() as got:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert int(rows[-1]["amount_micros"]) == figures["payable"] + figures["reserved"]  # the closing line
    assert -sum(int(r["amount_micros"]) for r in rows if r["kind"] == "payout") == figures["paid"]
    accrued = sum(int(r["amount_micros"]) for r in rows if r["kind"] in ("accrual", "refund"))
    assert accrued == figures["accrued"]
    with page.expect_download() as got:
        page.get_by_role("link", name="PDF").click()
    pdf = Path(got.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000 and got.value.suggested_filename.endswith(".pdf")
    with page.expect_download() as got:
        page.get_by_role("link", name="HTML").click()
    assert format_micros(figures["payable"] + figures["reserved"], currency) in Path(got.value.path()).read_text()
    # the same figures as `tributary statement`
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert main([*cli_args(world.cfg), "statement", holder, "--currency", currency, "--format", "csv"]) == 0
    assert list(csv.DictReader(io.StringIO(out.getvalue()))) == rows


def test_payouts_show_their_transfers_and_ledger_entries(world, browser):
    journal = world.journal()
    requests = {r["payout_id"]: r for r in read_topic(world.cfg, Topic.PAYOUT_REQUESTS)}
    results = {r["payout_id"]: r for r in read_topic(world.cfg, Topic.PAYOUT_RESULTS)}
    holder = sorted(requests.values(), key=lambda r: r["holder_id"])[0]["holder_id"]
    mine = {pid: r for pid, r in requests.items() if r["holder_id"] == holder}
    page = signed_in(world, browser, holder)
    page.goto(f"{world.base}/payouts")
    page.screenshot(path=str(world.shots / "payouts.png"), full_page=True)
    for pid, r in mine.items():
        assert page.locator(f"[data-payout='{pid}']").inner_text() == format_micros(r["amount_micros"], r["currency"])
    assert page.locator("[data-payout]").count() == len(mine)
    for pid in sorted(mine)[:3]:
        page.goto(f"{world.base}/payouts")
        page.get_by_role("link", name=pid).click()
        assert page.locator("h1").inner_text() == f"Payout {pid}"
        assert page.locator("[data-figure='transfer']").inner_text() == (results[pid].get("transfer_id") or "-")
        shown = sorted(page.locator("#payout-entries tbody tr td:nth-child(2)").all_inner_texts())
        assert shown == sorted(e["entry_id"] for e in journal if e.get("payout_id") == pid)
    page.screenshot(path=str(world.shots / "payout.png"), full_page=True)


def test_a_credit_leads_to_its_evidence_with_the_copied_words_marked(world, browser):
    journal = {e["entry_id"]: e for e in world.journal()}
    holder = world.sample["holders"][0]["holder_id"]
    page = signed_in(world, browser, holder)
    page.goto(f"{world.base}/credits")
    page.screenshot(path=str(world.shots / "credits.png"), full_page=True)
    links = page.locator("#credits a").all()
    assert links
    found_marks = False
    for n in range(min(len(links), 30)):
        page.goto(f"{world.base}/credits")
        page.locator("#credits a").nth(n).click()
        entry_id = page.locator("#credit tr:nth-child(2) td").inner_text().split(" ")[0]
        entry = journal[entry_id]
        assert entry["holder_id"] == holder
        signed = entry["amount_micros"] if entry["entry_type"] == "accrual" else -entry["amount_micros"]
        assert page.locator("[data-figure='amount']").inner_text() == format_micros(signed, entry["currency"])
        assert page.locator("[data-figure='contract']").inner_text().startswith(
            f"{entry['contract_id']} version {entry['contract_version']}")
        if page.locator("blockquote.output mark").count() and page.locator("blockquote.work mark").count():
            found_marks = True
            assert "calibration cal-" in page.locator("[data-figure='calibration']").inner_text()
            page.screenshot(path=str(world.shots / "evidence.png"), full_page=True)
            break
    assert found_marks, "the sample traffic quotes works verbatim: some credit must show copied words on both sides"


def probable_credit(world) -> tuple[str, str, str, str]:
    """(holder, entry_id, event_id, work_id) of an accrual paying a probable share (its id
    names the share it paid: a work may also have a certain share in the same output)."""
    _, rows = query(world.cfg, """
        SELECT l.holder_id, l.entry_id, l.event_id, l.work_id, a.attribution_id
        FROM (SELECT * FROM ledger_entries FINAL WHERE entry_type = 'accrual' AND holder_id NOT LIKE 'escrow:%') AS l
        INNER JOIN (SELECT event_id, attribution_id, shares FROM attributions FINAL) AS a ON l.event_id = a.event_id
        WHERE position(a.shares, '"probable"') > 0 ORDER BY l.entry_id""")
    found = [(h, e, ev, w) for h, e, ev, w, att in rows
             if e == ledger.accrual_entry_id(att, ledger.share_key(h, w, ledger.PROBABLE))]
    assert found, "the sample traffic has paraphrases: some credit must pay a probable share"
    return found[0]


def test_a_holder_disputes_a_probable_match_and_no_money_moves(world, browser, capsys):
    holder, entry_id, event_id, work_id = probable_credit(world)
    before = expected_balances(world, holder)
    page = signed_in(world, browser, holder)
    page.goto(f"{world.base}/credits/{world.signer.ref(holder, entry_id)}")
    assert "tier probable" in page.locator("[data-figure='share']").inner_text()
    assert page.locator("blockquote.output").count() >= 1
    page.locator("#reason").fill("   ")
    page.get_by_role("button", name="File dispute").click()
    assert "Say what is wrong" in page.locator("#dispute-problem").inner_text()
    reason = "This sentence is our own wording of a public fact; it is not drawn from this work. <b>no markup</b>"
    page.locator("#reason").fill(reason)
    page.get_by_role("button", name="File dispute").click()
    assert page.url.endswith("?filed=1")  # post, redirect, get: a reload cannot file it twice
    # "filed", or already the dispute itself when the sink stored it before the redirect landed
    notice = page.locator("#dispute-filed, #dispute-open").inner_text()
    assert "Your dispute was filed" in notice or "You disputed this match" in notice, notice
    assert page.locator("#dispute").count() == 0
    demo.wait_for(world.cfg, "the dispute in ClickHouse",
                  lambda: (scalar(world.cfg, "SELECT count() FROM review_requests FINAL") >= 1, "waiting", None),
                  timeout=60, log=lambda m: None)
    [[stored_reason, stored_entry]] = query(world.cfg, "SELECT reason, entry_id FROM review_requests FINAL")[1]
    assert stored_reason == reason and stored_entry == entry_id
    page.reload()
    page.goto(page.url.removesuffix("?filed=1"))
    assert reason in page.locator("#dispute-open").inner_text()  # as text: the markup is shown, not rendered
    assert page.locator("#dispute").count() == 0  # once
    page.screenshot(path=str(world.shots / "dispute.png"), full_page=True)
    page.goto(f"{world.base}/disputes")
    assert "awaiting a reviewer" in page.locator("#disputes").inner_text()
    capsys.readouterr()
    assert main([*cli_args(world.cfg), "review", "list", "--limit", "3"]) == 0
    assert f"DISPUTED by {holder}" in capsys.readouterr().out
    assert expected_balances(world, holder) == before  # a dispute is a request, never money


def test_my_works_shows_what_each_work_earned(world, browser):
    holder = holders_with_money(world)[0]
    earned: dict[tuple[str, str], int] = {}
    outputs: dict[str, set[str]] = {}
    for e in world.journal():
        if e["holder_id"] == holder and e["entry_type"] in ("accrual", "accrual_reversal"):
            sign = -1 if e["entry_type"] == "accrual_reversal" else 1
            earned[(e["work_id"], e["currency"])] = earned.get((e["work_id"], e["currency"]), 0) + sign * e["amount_micros"]
            if e["entry_type"] == "accrual":
                outputs.setdefault(f"{e['work_id']}/{e['currency']}", set()).add(e["event_id"])
    page = signed_in(world, browser, holder)
    page.goto(f"{world.base}/works")
    cells = page.locator("[data-work]").all()
    shown = {(c.get_attribute("data-work"), c.get_attribute("data-currency")): c.inner_text() for c in cells}
    assert shown == {k: format_micros(v, k[1]) for k, v in earned.items()}
    counted = {c.get_attribute("data-outputs"): int(c.inner_text()) for c in page.locator("[data-outputs]").all()}
    assert counted == {k: len(v) for k, v in outputs.items()}  # outputs, not ledger rows
    listed = set(page.locator("#works tbody td:first-child small").all_inner_texts())
    assert listed == {f"({w})" for w in world.works_of(holder)}  # every registered work, earning or not
    # a withdrawal shows as such; what the work earned before stays
    withdrawn = sorted(world.works_of(holder))[0]
    assert main([*cli_args(world.cfg), "catalog", "remove", withdrawn, "--reason", "rights reverted"]) == 0
    demo.wait_for(world.cfg, "the withdrawal in ClickHouse", lambda: (scalar(
        world.cfg, "SELECT count() FROM work_withdrawals FINAL WHERE work_id = {w:String}", {"w": withdrawn}) == 1,
        "", None), timeout=60, log=lambda m: None)
    page.reload()
    rows = [r.inner_text() for r in page.locator("#works tbody tr").all() if f"({withdrawn})" in r.inner_text()]
    assert rows and all("withdrawn" in r for r in rows)
    assert {(c.get_attribute("data-work"), c.get_attribute("data-currency")): c.inner_text()
            for c in page.locator("[data-work]").all()} == shown


def test_the_stripe_express_dashboard_is_one_click_away(world, browser):
    holder = holders_with_money(world)[0]
    page = signed_in(world, browser, holder)
    page.get_by_role("button", name="Open your Stripe Express dashboard").click()
    link = page.locator("#stripe-link").get_attribute("href")
    assert link.startswith("https://"), link  # the login link Stripe (here stripe-mock) made
    # the browser follows it to Stripe (offline here: the request is what can be seen)
    with page.expect_request(lambda r: r.url == link):
        page.locator("#stripe-link").click()
    page = signed_in(world, browser, holder)
    with httpx.Client(base_url=world.base, cookies={COOKIE: cookie_of(page)}) as client:
        assert client.post("/stripe-dashboard", data={"csrf": "nope"}).status_code == 400


# -- isolation ------------------------------------------------------------------------------------
def test_holder_b_reads_nothing_of_holder_a(world, browser):
    a, b = holders_with_money(world)[:2]
    page_a = signed_in(world, browser, a)
    urls: set[str] = set()
    for path in ("/payouts", "/credits", "/disputes", "/statements"):
        page_a.goto(f"{world.base}{path}")
        urls |= {h for h in page_a.eval_on_selector_all(
            "main a[href^='/payouts/'], main a[href^='/credits/']", "els => els.map(e => e.getAttribute('href'))")}
    assert any(u.startswith("/payouts/") for u in urls) and any(u.startswith("/credits/") for u in urls)
    a_ids = {u.split("/")[2].rsplit(".", 1)[0] for u in urls}
    page_b = signed_in(world, browser, b)
    cookie_b = cookie_of(page_b)
    csrf_b = page_b.locator("input[name=csrf]").first.get_attribute("value")
    with httpx.Client(base_url=world.base, cookies={COOKIE: cookie_b}) as client:
        for url in sorted(urls):
            answer = client.get(url)
            assert answer.status_code == 404, url
            ident = url.split("/")[2].rsplit(".", 1)[0]
            assert ident not in answer.text
            # an id of A's under a reference made for B: refused by the ownership check
            remade = f"/{url.split('/')[1]}/{world.signer.ref(b, ident)}"
            assert client.get(remade).status_code == 404, remade
        credit = next(u for u in urls if u.startswith("/credits/"))
        assert client.post(f"{credit}/dispute", data={"csrf": csrf_b, "reason": "x"}).status_code == 404
        for path in ("/", "/statements", "/payouts", "/credits", "/works", "/disputes"):
            body = client.get(path).text
            assert not any(ident in body for ident in a_ids), path
        csv_text = client.get("/statements/statement.csv").text
        assert a not in csv_text
    with httpx.Client(base_url=world.base) as anonymous:
        for path in ("/", "/statements", "/statements/statement.csv", "/statements/statement.pdf", "/payouts",
                     "/credits", "/works", "/disputes", *sorted(urls)):
            assert anonymous.get(path).status_code == 401, path
        anonymous.cookies.set(COOKIE, cookie_b[:-6] + "AAAAAA")
        assert anonymous.get("/").status_code == 401
    with httpx.Client(base_url=world.base, cookies={COOKIE: cookie_b}) as client:
        # a form without the session's CSRF token is refused, whatever it asks
        assert client.post("/signout", data={"csrf": "forged"}).status_code == 400


def test_bad_input_gets_a_clear_page_and_never_sql(world, browser):
    holder = holders_with_money(world)[0]
    page = signed_in(world, browser, holder)
    for path, status, says in (("/statements?since=yesterday", 400, "expected a date like"),
                               ("/statements?since=2026-12-01&until=2026-11-01", 400, "is after"),
                               ("/statements?currency=XXX", 400, "your ledger has"),
                               ('/?currency="><h1 id=pwn>x</h1>', 400, "that currency"),
                               ('/statements?currency="><h1 id=pwn>x</h1>', 400, "that currency"),
                               ("/credits?page=99999999999999", 400, "from 1 on"),
                               ("/credits?page=abc", 400, "whole number"),
                               ("/?currency=XXX", 400, "you have money in"),
                               ("/payouts/po_nothing.0000", 404, "nothing here for your account"),
                               ("/credits/%27%20OR%201=1--", 404, "nothing here for your account")):
        response = page.goto(f"{world.base}{path}")
        text = page.locator("main").inner_text()
        assert response.status == status and says in text, (path, text)
        assert "SELECT" not in page.content() and "Exception" not in page.content(), path
        assert page.locator("#pwn").count() == 0, path


def test_every_process_logs_json_lines_the_faust_worker_included(world):
    """Operators parse one JSON object per line from every stage (librdkafka's own stderr
    lines aside); the streams worker's Faust and mode loggers too."""
    for name in (*local.STAGES, local.PORTAL):
        text = local.stage_process(world.cfg, name).log_file.read_text(errors="replace")
        ours = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
        assert ours, name
        assert all({"ts", "level", "process", "logger", "msg"} <= set(o) for o in ours), name
        assert not [x for x in text.splitlines() if x.startswith("ts=")], name  # the old key=value lines
    streams = local.stage_process(world.cfg, "streams").log_file.read_text(errors="replace").splitlines()
    loggers = {json.loads(x)["logger"].split(".")[0] for x in streams if x.startswith("{")}
    assert loggers & {"faust", "mode"}, loggers


# -- accessibility basics -------------------------------------------------------------------------
CONTRAST_JS = """() => {
  const lum = c => { const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
  const worst = [];
  for (const el of document.querySelectorAll('h1, h2, h3, p, th, td, a, button, label, li, summary, mark')) {
    if (!el.offsetParent && el.tagName !== 'BODY') continue;
    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(el.tagName + ' ' + el.textContent.trim().slice(0, 40) + ' ' + ratio.toFixed(2));
  }
  return worst;
}"""

LABELS_JS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.id && document.querySelector(`label[for="${el.id}"]`)) && !el.getAttribute('aria-label'))
  .map(el => el.name)"""


def test_every_page_has_headings_labels_keyboard_navigation_and_readable_contrast(world, browser):
    holder, entry_id, _, _ = probable_credit(world)
    page = signed_in(world, browser, holder)
    pages = ["/", "/statements", "/payouts", "/credits", f"/credits/{world.signer.ref(holder, entry_id)}", "/works",
             "/disputes"]
    for path in pages:
        page.goto(f"{world.base}{path}")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("h1").count() == 1, path
        assert page.evaluate(LABELS_JS) == [], path
        assert page.evaluate(CONTRAST_JS) == [], path
        assert page.locator("nav[aria-label=Portal] [aria-current=page]").count() == 1, path
    page.goto(f"{world.base}/works")
    page.screenshot(path=str(world.shots / "works.png"), full_page=True)
    # the keyboard: the first Tab reaches the skip link, Enter moves focus into the content,
    # and the navigation is reachable by Tab alone
    page.goto(f"{world.base}/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(f"{world.base}/")
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert {"Overview", "Statements", "Payouts", "Why was I paid", "My works", "Disputes"} <= set(reached)
    while page.evaluate("document.activeElement.textContent.trim()") != "Disputes":
        page.keyboard.press("Shift+Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{world.base}/disputes" and page.locator("h1").inner_text() == "Disputes"
