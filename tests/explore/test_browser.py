"""The explorer in a real browser (headless Chromium) against a live server.

One recorded day (tests/recorded.py: a sequence gap and a disconnect on the
hot market) is served by pytest-django's live_server; the pages read the
JSON API from the browser as a logged-in staff member.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from markets import ingest
from markets.models import Event, Market, Series, Settlement
from markets.selectors import deltas_page
from tests.recorded import EVENT, HOT, QUIET, record_day

from .conftest import screenshot

pytestmark = pytest.mark.slow

# A past day inside the test database's partition window (PARTITION_DAYS_BEHIND).
DAY = (datetime.now(timezone.utc) - timedelta(days=3)).date()

# Light-mode colours of explore.css (--up, --down): what candles, lines and
# the depth chart are drawn with.
UP, DOWN = (22, 134, 90), (200, 58, 58)
DARK_UP, DARK_DOWN = (60, 207, 142), (255, 107, 107)

COUNT_COLOUR = """([selector, colours]) => {
  let n = 0;
  for (const canvas of document.querySelectorAll(selector)) {
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < d.length; i += 4) {
      if (colours.some(([r, g, b]) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g)
          + Math.abs(d[i + 2] - b) < 24 && d[i + 3] > 200)) n++;
    }
  }
  return n;
}"""

SET_SLIDER = """(ms) => {
  const slider = document.getElementById('slider');
  slider.value = String(ms);
  slider.dispatchEvent(new Event('input'));
}"""

BOOK_AT = """(iso) => {
  const book = document.getElementById('book');
  return book.dataset.state === 'ready' && book.dataset.at === iso;
}"""

LEVEL_ROWS = """() => [...document.querySelectorAll('#levels tbody tr')]
  .map(tr => [...tr.cells].map(td => td.textContent))"""


@pytest.fixture
def record(transactional_db):
    rec = record_day(DAY)
    Series.objects.create(ticker="KXTEST", title="Test highs", category="Climate")
    Event.objects.create(event_ticker=EVENT, series_ticker="KXTEST", title="High on test day")
    Market.objects.filter(ticker=HOT).update(title="Hot market", yes_sub_title="above 60",
                                             status="active")
    Market.objects.filter(ticker=QUIET).update(yes_sub_title="below 60", status="determined",
                                               result="no")
    Settlement.objects.create(market_ticker=QUIET, event_ticker=EVENT, result="no",
                              settlement_value=0, settled_at=rec.last)
    return rec


def _ms_iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _api_rows(client, iso):
    response = client.get("/api/v1/orderbook",
                          {"market_ticker": HOT, "timestamp": iso, "depth": 100})
    assert response.status_code == 200, response.content
    book = response.json()["data"]
    rows = []
    for i in range(max(len(book["yes"]), len(book["no"]))):
        row = []
        for side in ("yes", "no"):
            level = book[side][i] if i < len(book[side]) else None
            row += [level["price"], level["quantity"]] if level else ["", ""]
        rows.append(row)
    return book, rows


def _scrub_to(page, at: datetime) -> str:
    iso = _ms_iso(at)
    page.evaluate(SET_SLIDER, _ms(at))
    page.wait_for_function(BOOK_AT, arg=iso)
    return iso


def test_market_page_charts_slider_gap_and_calendar(record, staff_page, live_server, client):
    page = staff_page
    page.goto(f"{live_server.url}/explore/markets/{HOT}")
    page.wait_for_selector("#candles[data-loaded]")
    page.wait_for_selector("#spread[data-loaded]")
    page.wait_for_selector("#calendar .day")
    page.wait_for_function("document.getElementById('book').dataset.state === 'ready'")

    # The charts are drawn: candle bodies, bid/ask lines and the depth areas.
    assert int(page.get_attribute("#candles", "data-loaded")) > 0
    assert page.evaluate(COUNT_COLOUR, ["#candles canvas", [UP, DOWN]]) > 100
    assert page.evaluate(COUNT_COLOUR, ["#spread canvas", [UP, DOWN]]) > 100
    assert page.evaluate(COUNT_COLOUR, ["#depth", [UP, DOWN]]) > 100

    # The slider shows /orderbook at the instant it is moved to.
    before_gap = record.gap.detected_at - timedelta(seconds=2)
    later = record.disconnect + timedelta(seconds=10)
    shown = []
    for at in (before_gap, later):
        iso = _scrub_to(page, at)
        book, rows = _api_rows(client, iso)
        assert book["complete"] and rows
        assert page.evaluate(LEVEL_ROWS) == rows
        assert "Complete" in page.inner_text("#book-notice")
        shown.append(rows)
    assert shown[0] != shown[1]

    # Inside the recorded gap the page says so, and shows the last book known.
    iso = _scrub_to(page, record.gap.detected_at + (record.gap.recovered_at - record.gap.detected_at) / 2)
    book, rows = _api_rows(client, iso)
    assert not book["complete"] and book["gap"]["id"] == record.gap.id
    assert page.evaluate(LEVEL_ROWS) == rows
    assert "Inside a recorded gap" in page.inner_text("#book-notice")
    assert "gap" in page.get_attribute("#book-notice", "class")

    # "change ▶" moves to the next delta of the market.
    at = before_gap
    _scrub_to(page, at)
    (nxt,) = deltas_page(market_ticker=HOT, start=at.replace(microsecond=at.microsecond // 1000 * 1000)
                         + timedelta(microseconds=1), limit=1)
    page.click("#next-change")
    page.wait_for_function(
        "(iso) => document.getElementById('book').dataset.at !== iso", arg=_ms_iso(at))
    moved_to = datetime.fromisoformat(page.get_attribute("#book", "data-at"))
    assert moved_to == nxt.received_at

    # The calendar marks the recorded day, which has gaps, as degraded.
    cell = page.locator(f"#calendar .day[data-date='{DAY.isoformat()}']")
    assert cell.get_attribute("data-status") == "degraded"
    assert "degraded" in cell.get_attribute("class")

    # The trade tape and the links to the API follow the instant.
    page.wait_for_selector("#tape tbody tr")
    assert page.locator("#api-links a").count() >= 3
    assert HOT in page.inner_text("#snippet")

    _scrub_to(page, before_gap)
    page.wait_for_function(f"document.getElementById('tape').dataset.at === '{_ms_iso(before_gap)}'")
    screenshot(page, "market")

    # Switching the system to dark recolours the charts.
    page.emulate_media(color_scheme="dark")
    page.wait_for_function(f"() => ({COUNT_COLOUR})(['#candles canvas', [{list(DARK_UP)}, {list(DARK_DOWN)}]]) > 100")
    assert page.errors == []


def test_market_page_dark_and_narrow(record, browser, live_server, client, django_user_model):
    """On a phone-sized screen in dark mode the page fits and its charts draw."""
    user = django_user_model.objects.create_user("staff2", password="x", is_staff=True)
    client.force_login(user)
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": live_server.url}])
    page = context.new_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/explore/markets/{HOT}?at={_ms_iso(record.gap.detected_at)}")
    page.wait_for_selector("#candles[data-loaded]")
    page.wait_for_selector("#spread[data-loaded]")
    page.wait_for_function("document.getElementById('book').dataset.state === 'ready'")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 21, 28)"  # --bg of the dark scheme
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate(COUNT_COLOUR, ["#candles canvas", [DARK_UP, DARK_DOWN]]) > 50
    screenshot(page, "market-dark-narrow")
    context.close()
    assert errors == []


def test_home_series_and_event_pages(record, staff_page, live_server):
    page = staff_page
    page.goto(f"{live_server.url}/explore/?q=KXTEST")
    rows = page.locator("#markets tbody tr")
    assert rows.count() == 2  # HOT and QUIET, not KXOTHER
    assert "degraded" in page.locator(f"#markets tr:has(a:text('{HOT}')) .badge").get_attribute("class")
    screenshot(page, "home")

    page.click(f"a:text('{EVENT}')")
    page.wait_for_selector("#event-markets")
    cards = page.locator("#event-markets .card")
    assert cards.count() == 2
    assert "no" in cards.filter(has_text=QUIET).inner_text()  # its result
    screenshot(page, "event")

    page.goto(f"{live_server.url}/explore/series/KXTEST")
    assert page.locator("#events tbody tr").count() == 1
    screenshot(page, "series")
    assert page.errors == []


def test_a_live_market_follows_the_clock(staff_page, live_server, transactional_db):
    """An active market recorded until a moment ago: the slider's end and the book move on."""
    now = datetime.now(timezone.utc)
    Market.objects.create(ticker="LIVE-1", status="active")
    ingest.snapshots_ingest([("LIVE-1", now - timedelta(seconds=5), 1, 1, 1, "subscribe",
                              [["0.4000", "5.00"]], [["0.5500", "3.00"]], None)])
    ingest.trades_ingest([("LIVE-1", now - timedelta(seconds=4), "t1", Decimal("0.4200"),
                           Decimal("0.5800"), Decimal("2.00"), "yes", "bid", None, False,
                           now - timedelta(seconds=4), "ws")])
    page = staff_page
    page.goto(f"{live_server.url}/explore/markets/LIVE-1")
    page.wait_for_function("document.getElementById('book').dataset.state === 'ready'")
    first_max = int(page.get_attribute("#slider", "max"))
    assert page.is_visible("#live-note")
    page.wait_for_function(f"+document.getElementById('slider').max > {first_max}", timeout=15_000)
    page.wait_for_function(
        f"Date.parse(document.getElementById('book').dataset.at) > {first_max}", timeout=15_000)
    assert page.locator("#levels tbody tr").count() == 1  # 0.40 yes, 0.55 no
    assert page.errors == []
