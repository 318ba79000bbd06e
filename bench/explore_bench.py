"""How fast the explorer's market page is on the benchmark day, in a real browser.

Loads the API benchmark's day when absent (bench/generate_day.py: one market
with 1,000,000 deltas and 200,000 trades, a thousand quiet ones), serves the
project with gunicorn on 127.0.0.1 (API open, as under `make run`), opens
the hot market's page in headless Chromium and prints:

* first contentful paint, and when the charts, book and calendar are drawn;
* scrub latency: from moving the slider to a random instant until the book
  shown is /orderbook at that instant (p50 / p95 / max);
* a drag: 120 slider moves at 60 Hz, how many books were drawn during it and
  how long after the last move the last book shows;
* the "change ▶" button: from the click until the next change is drawn.

With --screenshots DIR it also saves the pages' screenshots (how
docs/screenshots/ was made; those were then shrunk with Debian's pngquant,
`pngquant --quality 60-85`, which nothing else needs). Prints numbers,
asserts nothing.

    python bench/explore_bench.py [--day 2026-11-23] [--scrubs 50] [--screenshots docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.django_env import database_url, setup_django  # noqa: E402
from bench.generate_day import DEFAULT_HOT_DELTAS, DEFAULT_PREFIX, generate_day  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Runs in the page: resolves when the book shown is the one at `iso`, with the
# milliseconds since `started` (after the next frame, i.e. once painted).
WAIT_FOR_BOOK = """
(iso) => new Promise((resolve) => {
  const book = document.getElementById('book');
  const done = () => book.dataset.at === iso && book.dataset.state === 'ready';
  const check = () => done() ? requestAnimationFrame(() => resolve(performance.now()))
                             : setTimeout(check, 1);
  check();
})"""

SCRUB = """
async (ms) => {
  const slider = document.getElementById('slider');
  const started = performance.now();
  slider.value = String(ms);
  slider.dispatchEvent(new Event('input'));
  const iso = new Date(ms).toISOString();
  const ended = await (%s)(iso);
  return ended - started;
}""" % WAIT_FOR_BOOK

DRAG = """
async ([from, to, moves]) => {
  const slider = document.getElementById('slider');
  const book = document.getElementById('book');
  const seen = new Set();
  const observer = new MutationObserver(() => seen.add(book.dataset.at));
  observer.observe(book, { attributes: true, attributeFilter: ['data-at'] });
  let ms = from, lastMove = 0;
  const started = performance.now();
  for (let i = 0; i < moves; i++) {
    if (i) await new Promise((r) => setTimeout(r, 1000 / 60));
    ms = Math.round(from + (to - from) * i / (moves - 1));
    slider.value = String(ms);
    slider.dispatchEvent(new Event('input'));
    lastMove = performance.now();
  }
  const ended = await (%s)(new Date(ms).toISOString());
  observer.disconnect();
  return { drawn: seen.size, seconds: (lastMove - started) / 1000, lag: ended - lastMove };
}""" % WAIT_FOR_BOOK

NEXT_CHANGE = """
async () => {
  const book = document.getElementById('book');
  const before = book.dataset.at;
  const started = performance.now();
  document.getElementById('next-change').click();
  await new Promise((resolve) => {
    const check = () => (book.dataset.at !== before && book.dataset.state === 'ready')
      ? requestAnimationFrame(resolve) : setTimeout(check, 1);
    check();
  });
  return performance.now() - started;
}"""

READY = """() => {
  const ok = (id) => document.getElementById(id).dataset.loaded !== undefined;
  return ok('candles') && ok('spread') && document.querySelector('#calendar .day')
    && document.getElementById('book').dataset.state === 'ready'
    && document.querySelector('#tape tbody tr');
}"""


def pct(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@contextmanager
def server():
    """gunicorn on an ephemeral 127.0.0.1 port, API open (as `make run` serves it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = {
        **os.environ, "DEBUG": "0", "SECRET_KEY": "bench-only", "DATABASE_URL": database_url(),
        "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING", "API_ALLOW_ANONYMOUS": "1",
        "API_RATE_ANON": "1000000/min",
    }
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "kalshi_data.wsgi:application", "--bind", f"fd://{listener.fileno()}",
         "--workers", "2", "--worker-class", "gthread", "--threads", "4",
         "--log-level", "warning"],
        env=env, pass_fds=[listener.fileno()],
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        listener.close()


def page_timings(page, url: str) -> dict:
    """Load `url` and wait for the whole page; milliseconds since navigation start."""
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    return page.evaluate("""() => {
        const at = (name) => performance.getEntriesByName(name)[0]?.startTime;
        return {
            html: performance.getEntriesByType('navigation')[0].responseEnd,
            fcp: at('first-contentful-paint'), book: at('explore:book'),
            candles: at('explore:candles'), calendar: at('explore:calendar'),
            spread: at('explore:spread'), ready: performance.now(),
        };
    }""")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=date.fromisoformat, help="UTC day (default: yesterday).")
    parser.add_argument("--hot-deltas", type=int, default=DEFAULT_HOT_DELTAS,
                        help="Deltas of the hot market when the day is generated.")
    parser.add_argument("--regenerate", action="store_true", help="Load the day even if present.")
    parser.add_argument("--loads", type=int, default=5, help="Page loads measured.")
    parser.add_argument("--scrubs", type=int, default=50, help="Random instants scrubbed to.")
    parser.add_argument("--screenshots", help="Save screenshots of the pages to this folder.")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    setup_django()
    from markets.models import Market, OrderbookDelta

    day = args.day or (datetime.now(timezone.utc).date() - timedelta(days=1))
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    hot = f"{DEFAULT_PREFIX}-HOT"
    deltas = OrderbookDelta.objects.filter(
        market_ticker=hot, received_at__gte=start, received_at__lt=start + timedelta(days=1)
    ).count()
    if args.regenerate or deltas < args.hot_deltas:
        generate_day(day=day, hot_deltas=args.hot_deltas)
        deltas = args.hot_deltas
    print(f"day {day}: {hot} has {deltas:,} deltas")

    # Before Playwright: its sync API keeps an asyncio loop on this thread,
    # and Django then refuses ORM calls.
    market = Market.objects.get(ticker=hot)
    quiet = Market.objects.filter(ticker__startswith=f"{DEFAULT_PREFIX}-Q").order_by("ticker").first()
    from playwright.sync_api import sync_playwright

    rng = random.Random(args.seed)
    with server() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        market_url = f"{base}/explore/markets/{hot}"

        print("\nmarket page load (ms since navigation start; first load, then median of the rest)")
        loads = [page_timings(page, market_url) for _ in range(args.loads + 1)]
        for name, label in (("html", "HTML received"), ("fcp", "first contentful paint"),
                            ("book", "order book drawn"), ("candles", "candle chart drawn"),
                            ("calendar", "coverage calendar drawn"),
                            ("spread", "bid/ask chart drawn (last slice)"),
                            ("ready", "everything, the tape too")):
            rest = statistics.median(load[name] for load in loads[1:])
            print(f"  {label:40s} {loads[0][name]:8.0f} {rest:8.0f}")

        print(f"\nscrub to {args.scrubs} random instants of the day (ms until the book is drawn)")
        lo, hi = int(page.get_attribute("#slider", "min")), int(page.get_attribute("#slider", "max"))
        samples = [page.evaluate(SCRUB, rng.randint(lo, hi)) for _ in range(args.scrubs)]
        print(f"  p50 {pct(samples, 50):.1f}  p95 {pct(samples, 95):.1f}  max {max(samples):.1f}")

        print("\ndrag the slider over one hour: 120 moves at 60 Hz")
        middle = (lo + hi) // 2
        drag = page.evaluate(DRAG, [middle, middle + 3_600_000, 120])
        print(f"  {drag['drawn']} books drawn in {drag['seconds']:.2f} s of dragging"
              f" ({drag['drawn'] / drag['seconds']:.1f}/s); last book {drag['lag']:.0f} ms"
              " after the last move")

        print("\n'change ▶' (next change of the book), 20 clicks (ms until drawn)")
        page.evaluate(SCRUB, middle)
        clicks = [page.evaluate(NEXT_CHANGE) for _ in range(20)]
        print(f"  p50 {pct(clicks, 50):.1f}  max {max(clicks):.1f}")

        print("\nother pages (ms since navigation start: first contentful paint / load)")
        for label, url in (
            (f"home (search {DEFAULT_PREFIX})", f"{base}/explore/?q={DEFAULT_PREFIX}"),
            ("event of the hot market", f"{base}/explore/events/{market.event_ticker}"),
            ("its series", f"{base}/explore/series/{market.series_ticker}"),
        ):
            page.goto(url)
            page.wait_for_function(
                "performance.getEntriesByName('first-contentful-paint').length"
                " && performance.getEntriesByType('navigation')[0].loadEventEnd")
            timing = page.evaluate("""() => [performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
                performance.getEntriesByType('navigation')[0].loadEventEnd]""")
            print(f"  {label:40s} {timing[0]:8.0f} {timing[1]:8.0f}")
        print(f"\nconsole errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))

        if args.screenshots:
            save_screenshots(browser, base, market, quiet, start, args.screenshots)
        browser.close()


def save_screenshots(browser, base: str, market, quiet, day_start: datetime,
                     folder: str) -> None:
    """The hot market's page (light, wide; dark, narrow, in the gap), search, an event, a series."""
    os.makedirs(folder, exist_ok=True)
    hot = market.ticker
    noon = (day_start + timedelta(hours=12)).isoformat().replace("+00:00", "Z")
    gap_at = (day_start + timedelta(hours=9, seconds=1)).isoformat().replace("+00:00", "Z")
    shots = [
        ("market", f"/explore/markets/{hot}?at={noon}&interval=15m", {}, True),
        ("market-dark-narrow", f"/explore/markets/{hot}?at={gap_at}",
         {"viewport": {"width": 390, "height": 844}, "color_scheme": "dark"}, False),
        ("home", f"/explore/?q={DEFAULT_PREFIX}", {}, False),
        ("event", f"/explore/events/{quiet.event_ticker}", {}, False),
        ("series", f"/explore/series/{market.series_ticker}", {}, False),
    ]
    for name, path, options, full in shots:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **options})
        page = context.new_page()
        page.goto(base + path)
        if "/markets/" in path:
            page.wait_for_function(READY, timeout=120_000)
            page.wait_for_timeout(300)
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=full)
        context.close()
        print(f"saved {folder}/{name}.png")


if __name__ == "__main__":
    main()
