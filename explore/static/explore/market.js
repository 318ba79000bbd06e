// The market page: every number on it comes from the JSON API (/api/v1/...),
// read with the page's own session, so it shows what an API client gets.
// Charts are TradingView Lightweight Charts (vendor/, served by the app);
// the depth chart is a plain canvas.
"use strict";

(function () {
  const LC = window.LightweightCharts;
  const cfg = JSON.parse(document.getElementById("explore-config").textContent);
  const $ = (id) => document.getElementById(id);
  const INTERVALS = { m: 60, h: 3600, d: 86400 };
  const MAX_CANDLE_BUCKETS = 50000; // as markets.selectors.MAX_CANDLE_BUCKETS
  const SPREAD_POINTS = 240; // best bid/ask points over the record
  const SPREAD_SLICES = 4; // requests they are asked for in, at once
  const SPREAD_PAGE = 1000; // the most points one /book_snapshots page holds
  const BOOK_DEPTH = 100; // levels per side shown
  const TAPE_ROWS = 15; // trades each side of the instant
  const LIVE_EVERY_MS = 5000; // how often a live market's page moves its end
  const LIVE_CANDLES_EVERY = 6; // ... and reloads its candles, in those steps

  // --- time: microseconds since the epoch, exact in a double until year 2255 ---
  function isoToMicros(iso) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)$/.exec(iso);
    const whole = Date.parse(m[1] + (m[3] === "Z" ? "Z" : m[3]));
    return whole * 1000 + Number((m[2] || "").padEnd(6, "0"));
  }
  function microsToIso(us) {
    const ms = Math.floor(us / 1000);
    const rest = us - ms * 1000;
    const base = new Date(ms).toISOString(); // ...ss.mmmZ
    return rest ? base.replace("Z", String(rest).padStart(3, "0") + "Z") : base;
  }
  const secs = (iso) => Math.floor(isoToMicros(iso) / 1e6);
  const shortTime = (iso) => iso.replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1");
  const price = (s) => (s == null ? null : parseFloat(s));

  function parseInterval(text) {
    const m = /^(\d+)([mhd])$/.exec(text);
    return m ? Number(m[1]) * INTERVALS[m[2]] : null;
  }

  // --- the API -------------------------------------------------------------------
  const status = $("status");
  function say(text, isError) {
    status.textContent = text || "";
    status.classList.toggle("error", !!isError);
  }

  async function api(path, params) {
    const url = path + "?" + new URLSearchParams(params).toString();
    for (;;) {
      const response = await fetch(url, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (response.status === 429) {
        // The API's rate limit (API_RATE_ANON / API_RATE_KEY): wait as told.
        const wait = Number(response.headers.get("Retry-After") || "2");
        say(`The API's rate limit was reached; retrying in ${wait} s.`, true);
        await new Promise((r) => setTimeout(r, wait * 1000));
        continue;
      }
      const body = await response.json();
      if (!response.ok) throw new Error(`${path}: ${body.message || response.status}`);
      return body;
    }
  }

  // --- theme ------------------------------------------------------------------------
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const charts = [];
  function chartTheme() {
    return {
      layout: { background: { color: css("--bg") }, textColor: css("--fg") },
      grid: { vertLines: { color: css("--line") }, horzLines: { color: css("--line") } },
      rightPriceScale: { borderColor: css("--line") },
      timeScale: { borderColor: css("--line"), timeVisible: true, secondsVisible: true },
    };
  }
  function makeChart(el) {
    const chart = LC.createChart(el, { autoSize: true, ...chartTheme() });
    charts.push(chart);
    return chart;
  }
  // Series coloured from the stylesheet: [series, {option: css variable}].
  const coloured = [];
  function colour(series, options) {
    coloured.push([series, options]);
    return series;
  }
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    charts.forEach((c) => c.applyOptions(chartTheme()));
    for (const [series, options] of coloured) {
      series.applyOptions(Object.fromEntries(
        Object.entries(options).map(([name, variable]) => [name, css(variable)])));
    }
    if (book.data) drawDepth(book.data);
    loadCandles(currentInterval, true).catch(fail); // volume bars and markers
  });

  const startUs = isoToMicros(cfg.start);
  let endUs = isoToMicros(cfg.end); // grows while a live market is open (below)
  const gaps = cfg.gaps.map((g) => ({
    start: isoToMicros(g.start), end: g.end ? isoToMicros(g.end) : endUs, reason: g.reason,
  }));
  const PRICE_FORMAT = { type: "price", precision: 4, minMove: 0.0001 };

  // A histogram on its own hidden scale, full height: shades the gaps.
  function gapBand(chart) {
    const band = colour(chart.addSeries(LC.HistogramSeries, {
      priceScaleId: "gaps", color: css("--gap"), priceLineVisible: false,
      lastValueVisible: false, base: 0,
    }), { color: "--gap" });
    chart.priceScale("gaps").applyOptions({ visible: false, scaleMargins: { top: 0, bottom: 0 } });
    return band;
  }

  // --- candles ------------------------------------------------------------------------
  const candleChart = makeChart($("candles"));
  const candles = colour(candleChart.addSeries(LC.CandlestickSeries, {
    upColor: css("--up"), downColor: css("--down"), wickUpColor: css("--up"),
    wickDownColor: css("--down"), borderVisible: false, priceFormat: PRICE_FORMAT,
  }), { upColor: "--up", downColor: "--down", wickUpColor: "--up", wickDownColor: "--down" });
  const volume = candleChart.addSeries(LC.HistogramSeries, {
    priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false,
    priceLineVisible: false,
  });
  candleChart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const candleGaps = gapBand(candleChart);
  const candleMarkers = LC.createSeriesMarkers(candles, []);
  let settlementLine = null;

  function chooseInterval() {
    const span = (endUs - startUs) / 1e6;
    for (const name of ["1m", "5m", "15m", "1h", "4h", "1d"]) {
      if (span / parseInterval(name) <= 3000) return name;
    }
    return "1d";
  }

  async function loadCandles(name, keepView = false) {
    const step = parseInterval(name);
    document.querySelectorAll("#intervals button").forEach((b) =>
      b.classList.toggle("active", b.dataset.interval === name));
    const end = Math.ceil(endUs / 1e6 / step) * step + step;
    let start = Math.floor(startUs / 1e6 / step) * step;
    let note = "";
    if ((end - start) / step > MAX_CANDLE_BUCKETS) {
      start = end - MAX_CANDLE_BUCKETS * step;
      note = `the last ${MAX_CANDLE_BUCKETS} candles; a longer interval shows the whole record`;
    }
    const body = await api(cfg.api.candles, {
      interval: name, start_time: new Date(start * 1000).toISOString(),
      end_time: new Date(end * 1000).toISOString(),
    });
    const rows = body.data.candles;
    candles.setData(rows.map((c) => ({
      time: secs(c.start), open: price(c.open), high: price(c.high), low: price(c.low),
      close: price(c.close),
    })));
    volume.setData(rows.map((c) => ({
      time: secs(c.start), value: parseFloat(c.volume),
      color: price(c.close) >= price(c.open) ? css("--up") + "88" : css("--down") + "88",
    })));
    // Gaps: one shaded bar per bucket they touch.
    const band = [];
    for (const g of gaps) {
      let t = Math.floor(g.start / 1e6 / step) * step;
      for (let n = 0; t < g.end / 1e6 && n < 5000; t += step, n++) {
        if (t >= start && t < end) band.push({ time: t, value: 1 });
      }
    }
    candleGaps.setData(dedupe(band));
    const marks = gaps.map((g) => ({
      time: Math.floor(g.start / 1e6 / step) * step, position: "aboveBar",
      color: css("--down"), shape: "arrowDown", text: "gap",
    }));
    if (cfg.settlement && cfg.settlement.at) {
      marks.push({
        time: Math.floor(secs(cfg.settlement.at) / step) * step, position: "aboveBar",
        color: css("--accent"), shape: "circle", text: `settled ${cfg.settlement.result}`,
      });
    }
    if (settlementLine) candles.removePriceLine(settlementLine);
    if (cfg.settlement && cfg.settlement.value != null) {
      settlementLine = candles.createPriceLine({
        price: parseFloat(cfg.settlement.value), color: css("--accent"), lineStyle: 2,
        title: "settlement",
      });
    }
    candleMarkers.setMarkers(marks.filter((m) => m.time >= start && m.time < end)
      .sort((a, b) => a.time - b.time));
    if (!keepView) candleChart.timeScale().fitContent();
    $("candles-note").textContent = rows.length
      ? `${rows.length} candles${note ? "; " + note : ""}` : "no trade recorded";
    $("candles").dataset.loaded = String(rows.length);
    performance.mark("explore:candles");
    currentInterval = name;
    updateApiLinks();
  }

  function dedupe(points) {
    const seen = new Set();
    return points.filter((p) => !seen.has(p.time) && seen.add(p.time))
      .sort((a, b) => a.time - b.time);
  }

  let currentInterval = cfg.interval && parseInterval(cfg.interval) ? cfg.interval : chooseInterval();
  document.querySelectorAll("#intervals button").forEach((b) =>
    b.addEventListener("click", () => loadCandles(b.dataset.interval).catch(fail)));
  candleChart.subscribeClick((param) => { if (param.time) setInstant(param.time * 1e6); });

  // --- best bid / ask and spread over time (/book_snapshots) -------------------------------
  const spreadChart = makeChart($("spread"));
  const spreadGaps = gapBand(spreadChart);
  const bidLine = colour(spreadChart.addSeries(LC.LineSeries, {
    color: css("--up"), lineWidth: 1, priceFormat: PRICE_FORMAT, title: "yes bid",
  }), { color: "--up" });
  const askLine = colour(spreadChart.addSeries(LC.LineSeries, {
    color: css("--down"), lineWidth: 1, priceFormat: PRICE_FORMAT, title: "yes ask",
  }), { color: "--down" });
  const spreadSeries = spreadChart.addSeries(LC.HistogramSeries, {
    priceScaleId: "spread", color: css("--accent") + "66", priceFormat: PRICE_FORMAT,
    lastValueVisible: false, priceLineVisible: false, title: "spread",
  });
  spreadChart.priceScale("spread").applyOptions({ scaleMargins: { top: 0.75, bottom: 0 } });
  spreadChart.subscribeClick((param) => { if (param.time) setInstant(param.time * 1e6); });

  // Each point is /orderbook at a boundary, which costs a few milliseconds
  // on a busy day (markets/book_snapshots.py): a few hundred points, asked
  // for in slices, one after the other (a heavy endpoint, see above), and
  // drawn as they arrive.
  async function loadSpread() {
    const spanS = Math.max(1, Math.ceil((endUs - startUs) / 1e6));
    const step = Math.min(86400, Math.max(1, Math.ceil(spanS / SPREAD_POINTS)));
    const first = Math.floor(startUs / 1e6 / step) * step;
    const last = Math.floor(endUs / 1e6 / step) * step + step;
    const perSlice = Math.ceil((last - first) / step / SPREAD_SLICES) * step;
    const points = [];
    for (let from = first; from < last; from += perSlice) {
      const params = {
        market_ticker: cfg.ticker, interval: step + "s", depth: 1, limit: SPREAD_PAGE,
        start_time: new Date(from * 1000).toISOString(),
        end_time: new Date(Math.min(last, from + perSlice) * 1000).toISOString(),
      };
      for (;;) {
        // A page may end early at the API's work budget: follow its cursor.
        const body = await api(cfg.api.book_snapshots, params);
        points.push(...body.data);
        drawSpread(points);
        if (!body.has_more) break;
        params.cursor = body.next_cursor;
      }
    }
    $("spread-note").textContent = `every ${step} s; shaded: no complete book (gap or before the first snapshot)`;
    $("spread").dataset.loaded = String(points.length);
    performance.mark("explore:spread");
  }

  function drawSpread(points) {
    points.sort((a, b) => (a.timestamp < b.timestamp ? -1 : 1));
    const bids = [], asks = [], spreads = [], band = [];
    for (const p of points) {
      const t = secs(p.timestamp);
      const bid = p.best.yes_bid && price(p.best.yes_bid.price);
      const ask = p.best.yes_ask && price(p.best.yes_ask.price);
      bids.push(bid != null ? { time: t, value: bid } : { time: t });
      asks.push(ask != null ? { time: t, value: ask } : { time: t });
      spreads.push(bid != null && ask != null ? { time: t, value: +(ask - bid).toFixed(4) } : { time: t });
      if (!p.complete) band.push({ time: t, value: 1 });
    }
    bidLine.setData(bids);
    askLine.setData(asks);
    spreadSeries.setData(spreads);
    spreadGaps.setData(band);
    spreadChart.timeScale().fitContent();
  }

  // --- the book at an instant (/orderbook) ----------------------------------------------
  const slider = $("slider");
  slider.min = String(Math.floor(startUs / 1000));
  slider.max = String(Math.ceil(endUs / 1000));
  const book = { wanted: null, busy: false, data: null, atUs: null };

  function setInstant(us) {
    us = Math.round(Math.min(Math.max(us, startUs), endUs));
    slider.value = String(Math.floor(us / 1000));
    requestBook(us);
  }
  slider.addEventListener("input", () => requestBook(Number(slider.value) * 1000));

  // At most one request in flight; while one runs, only the latest wish is kept,
  // so dragging the slider never queues a backlog.
  function requestBook(us) {
    book.wanted = us;
    $("instant").textContent = shortTime(microsToIso(us));
    if (!book.busy) pumpBook();
  }
  async function pumpBook() {
    book.busy = true;
    $("book").dataset.state = "loading";
    try {
      while (book.wanted !== null) {
        const us = book.wanted;
        book.wanted = null;
        const body = await api(cfg.api.orderbook, {
          market_ticker: cfg.ticker, timestamp: microsToIso(us), depth: BOOK_DEPTH,
        });
        renderBook(us, body.data); // shown even mid-drag: the book follows the slider
      }
    } catch (err) {
      fail(err);
    } finally {
      book.busy = false;
      $("book").dataset.state = "ready";
    }
  }

  function renderBook(us, data) {
    book.data = data;
    book.atUs = us;
    const iso = microsToIso(us);
    $("book").dataset.at = iso;
    performance.mark("explore:book");
    $("instant").textContent = shortTime(iso);
    const notice = $("book-notice");
    if (data.gap) {
      notice.className = "notice gap";
      notice.textContent = `Inside a recorded gap (${data.gap.reason}, ${shortTime(data.gap.detected_at)} → ` +
        `${data.gap.recovered_at ? shortTime(data.gap.recovered_at) : "still open"}): ` +
        "this is the last book known before it, not the market's book at this instant.";
    } else if (!data.snapshot) {
      notice.className = "notice gap";
      notice.textContent = "No book recorded yet at this instant" +
        (data.data_starts_at ? `; the record starts at ${shortTime(data.data_starts_at)}.` : ".");
    } else {
      notice.className = "notice ok";
      notice.textContent = `Complete: snapshot (${data.snapshot.source}) at ${shortTime(data.snapshot.received_at)} ` +
        `plus ${data.deltas_applied} deltas` +
        (data.last_update ? `; last change ${shortTime(data.last_update.received_at)}.` : ".");
    }
    const b = data.best;
    const bid = b.yes_bid && b.yes_bid.price, ask = b.yes_ask && b.yes_ask.price;
    $("best").innerHTML = "";
    const parts = [
      ["bid", `yes bid ${bid || "—"}`], ["ask", `yes ask ${ask || "—"}`],
      ["", `spread ${bid && ask ? (parseFloat(ask) - parseFloat(bid)).toFixed(4) : "—"}`],
    ];
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      $("best").appendChild(span);
    }
    const tbody = $("levels").tBodies[0];
    tbody.textContent = "";
    const rows = Math.max(data.yes.length, data.no.length);
    for (let i = 0; i < rows; i++) {
      const tr = tbody.insertRow();
      const y = data.yes[i], n = data.no[i];
      for (const [text, cls] of [[y && y.price, "yes"], [y && y.quantity, ""], [n && n.price, "no"], [n && n.quantity, ""]]) {
        const td = tr.insertCell();
        td.className = "num " + cls;
        td.textContent = text || "";
      }
    }
    if (!rows) tbody.insertRow().insertCell().textContent = "empty book";
    drawDepth(data);
    updateApiLinks();
    scheduleTape(us);
  }

  // Depth: cumulative yes bids (left of the spread) and yes asks, i.e.
  // 1 - no bids (right), over yes prices 0..1.
  function drawDepth(data) {
    const canvas = $("depth");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.fillStyle = css("--bg");
    ctx.fillRect(0, 0, w, h);
    const pad = { l: 8, r: 8, t: 8, b: 20 };
    const bids = [], asks = [];
    let total = 0;
    for (const lv of data.yes) { total += parseFloat(lv.quantity); bids.push([parseFloat(lv.price), total]); }
    total = 0;
    for (const lv of data.no) { total += parseFloat(lv.quantity); asks.push([1 - parseFloat(lv.price), total]); }
    const maxQ = Math.max(1, bids.length ? bids[bids.length - 1][1] : 0, asks.length ? asks[asks.length - 1][1] : 0);
    // The prices the levels shown span (a little wider), not always 0..1.
    const prices = [...bids, ...asks].map(([p]) => p);
    const lo = prices.length ? Math.max(0, Math.min(...prices) - 0.02) : 0;
    const hi = prices.length ? Math.min(1, Math.max(...prices) + 0.02) : 1;
    const x = (p) => pad.l + ((p - lo) / (hi - lo || 1)) * (w - pad.l - pad.r);
    const y = (q) => h - pad.b - (q / maxQ) * (h - pad.t - pad.b);
    ctx.strokeStyle = css("--line");
    ctx.fillStyle = css("--muted");
    ctx.font = "11px system-ui, sans-serif";
    ctx.beginPath();
    for (let i = 0; i <= 4; i++) {
      const p = lo + ((hi - lo) * i) / 4;
      ctx.moveTo(x(p), pad.t); ctx.lineTo(x(p), h - pad.b);
      ctx.fillText(p.toFixed(hi - lo < 0.1 ? 3 : 2), Math.max(0, Math.min(x(p) - 12, w - 34)), h - 5);
    }
    ctx.stroke();
    // A side as a step area: from its best price outwards, the quantity
    // available at that price or better.
    function side(points, color, outward) {
      if (!points.length) return;
      ctx.beginPath();
      ctx.moveTo(x(points[0][0]), y(0));
      let prev = 0;
      for (const [p, q] of points) { ctx.lineTo(x(p), y(prev)); ctx.lineTo(x(p), y(q)); prev = q; }
      ctx.lineTo(x(outward), y(prev));
      ctx.lineTo(x(outward), y(0));
      ctx.closePath();
      ctx.globalAlpha = 0.25; ctx.fillStyle = color; ctx.fill();
      ctx.globalAlpha = 1; ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.stroke();
    }
    side(bids, css("--up"), lo);
    side(asks, css("--down"), hi);
    if (data.gap || !data.snapshot) {
      // The chart itself says that this is not the market's book now.
      ctx.fillStyle = css("--gap");
      ctx.fillRect(0, 0, w, h);
      ctx.fillStyle = css("--down");
      ctx.font = "600 13px system-ui, sans-serif";
      ctx.fillText(data.gap ? "inside a recorded gap: last book known" : "no book recorded yet",
        pad.l + 4, pad.t + 14);
    }
    canvas.dataset.drawn = String(data.yes.length + data.no.length);
  }

  // Previous / next change of the book: the next delta (/deltas) or the
  // book's last update before the current one (/orderbook), or a gap's edge.
  async function nextChange() {
    const from = book.atUs ?? startUs;
    const body = await api(cfg.api.deltas, {
      market_ticker: cfg.ticker, start_time: microsToIso(from + 1), limit: 1,
    });
    const candidates = gaps.flatMap((g) => [g.start, g.end]).filter((t) => t > from);
    if (body.data.length) candidates.push(isoToMicros(body.data[0].received_at));
    if (candidates.length) setInstant(Math.min(...candidates));
  }
  async function prevChange() {
    const from = book.atUs ?? endUs;
    let last = book.data && book.data.last_update ? isoToMicros(book.data.last_update.received_at) : from;
    if (last >= from) last = from;
    const body = await api(cfg.api.orderbook, {
      market_ticker: cfg.ticker, timestamp: microsToIso(last - 1), depth: 1,
    });
    const candidates = gaps.flatMap((g) => [g.start, g.end]).filter((t) => t < from);
    if (body.data.last_update) candidates.push(isoToMicros(body.data.last_update.received_at));
    setInstant(candidates.length ? Math.max(...candidates) : startUs);
  }
  $("next-change").addEventListener("click", () => nextChange().catch(fail));
  $("prev-change").addEventListener("click", () => prevChange().catch(fail));

  // --- the trade tape around the instant (/trades) -------------------------------------
  let tapeTimer = null;
  function scheduleTape(us) {
    clearTimeout(tapeTimer);
    tapeTimer = setTimeout(() => loadTape(us).catch(fail), 200);
  }
  async function loadTape(us) {
    // Trades before the instant: the API pages forwards, so ask for a window
    // that ends at the instant, narrower while it holds more than a page.
    let before = [];
    for (const seconds of [3600, 300, 30]) {
      const body = await api(cfg.api.trades, {
        market_ticker: cfg.ticker, start_time: microsToIso(us - seconds * 1e6),
        end_time: microsToIso(us + 1), limit: 1000,
      });
      before = body.data;
      if (!body.has_more) break;
    }
    const after = await api(cfg.api.trades, {
      market_ticker: cfg.ticker, start_time: microsToIso(us + 1), limit: TAPE_ROWS,
    });
    if (book.atUs !== us) return; // the slider moved on
    const tbody = $("tape").tBodies[0];
    tbody.textContent = "";
    const rows = [...before.slice(-TAPE_ROWS).map((t) => [t, "before"]),
      ...after.data.map((t, i) => [t, i === 0 ? "after now" : "after"])];
    for (const [t, cls] of rows) {
      const tr = tbody.insertRow();
      tr.className = cls;
      const side = t.taker_outcome_side || t.taker_side || "";
      for (const [text, c] of [[shortTime(t.ts), ""], [t.yes_price, "num"], [t.count, "num"], [side, side]]) {
        const td = tr.insertCell();
        td.className = c;
        td.textContent = text;
      }
    }
    if (!rows.length) tbody.insertRow().insertCell().textContent = "no trade within the hour";
    // Scroll the tape (not the page) so that the instant is in its middle.
    const now = tbody.querySelector("tr.now");
    const box = $("tape").parentElement;
    if (now) box.scrollTop = now.offsetTop - box.clientHeight / 2;
    $("tape").dataset.at = microsToIso(us);
  }

  // --- the coverage calendar (/coverage) ------------------------------------------------
  async function loadCalendar() {
    const body = await api(cfg.api.coverage, {
      market_ticker: cfg.ticker, start_date: cfg.calendar.start_date, end_date: cfg.calendar.end_date,
    });
    const el = $("calendar");
    el.textContent = "";
    let month = "";
    for (const day of body.data.days) {
      if (day.date.slice(0, 7) !== month) {
        month = day.date.slice(0, 7);
        const label = document.createElement("div");
        label.className = "month";
        label.textContent = month;
        el.appendChild(label);
      }
      const cell = document.createElement("div");
      cell.className = "day " + day.status;
      cell.dataset.date = day.date;
      cell.dataset.status = day.status;
      cell.textContent = String(Number(day.date.slice(8)));
      cell.title = `${day.date}: ${day.status}; ${day.deltas} deltas, ${day.trades} trades` +
        (day.gaps.length ? `; ${day.gaps.length} gap(s), ${Math.round(day.gap_seconds)} s` : "");
      cell.addEventListener("click", () =>
        setInstant(day.first_event ? isoToMicros(day.first_event) : isoToMicros(day.date + "T00:00:00Z")));
      el.appendChild(cell);
    }
    performance.mark("explore:calendar");
  }

  // --- links to the JSON API and a Python snippet ------------------------------------------
  function updateApiLinks() {
    const at = microsToIso(book.atUs ?? endUs);
    const q = (params) => "?" + new URLSearchParams(params).toString();
    const links = [
      ["order book at this instant", cfg.api.orderbook + q({ market_ticker: cfg.ticker, timestamp: at })],
      [`${currentInterval} candles`, cfg.api.candles + q({ interval: currentInterval, start_time: cfg.start, end_time: cfg.end })],
      ["trades from this instant", cfg.api.trades + q({ market_ticker: cfg.ticker, start_time: at })],
      ["coverage", cfg.calendar ? cfg.api.coverage + q({ market_ticker: cfg.ticker, ...cfg.calendar }) : null],
    ];
    const ul = $("api-links");
    ul.textContent = "";
    for (const [label, href] of links) {
      if (!href) continue;
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = href;
      a.textContent = label;
      li.appendChild(a);
      ul.appendChild(li);
    }
    const root = cfg.api.root.replace(/\/$/, "");
    $("snippet").textContent = [
      "import httpx  # or any HTTP client",
      "",
      `API = "${root}"`,
      'HEADERS = {"Authorization": "Bearer <your API key>"}  # not needed when the API is open',
      "",
      `book = httpx.get(f"{API}/orderbook", headers=HEADERS, params={`,
      `    "market_ticker": "${cfg.ticker}", "timestamp": "${at}"}).json()["data"]`,
      'print(book["best"], book["complete"])',
      `candles = httpx.get(f"{API}/candles/${cfg.ticker}", headers=HEADERS, params={`,
      `    "interval": "${currentInterval}", "start_time": "${cfg.start}", "end_time": "${cfg.end}",`,
      '}).json()["data"]["candles"]',
    ].join("\n");
  }
  $("copy-snippet").addEventListener("click", async () => {
    const text = $("snippet").textContent;
    try {
      await navigator.clipboard.writeText(text);
      say("Copied.");
    } catch (_) {
      // No clipboard outside a secure context: select it for Ctrl-C instead.
      const range = document.createRange();
      range.selectNodeContents($("snippet"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      say("Selected: press Ctrl-C to copy.");
    }
  });

  function fail(err) { say(String(err.message || err), true); }

  // --- a live market: the record grows while the page is open ------------------------
  // The slider's end follows the clock; a book shown at the end follows it
  // too, and the candles are refreshed now and then (keeping pan and zoom).
  if (cfg.live) {
    let ticks = 0;
    $("live-note").hidden = false;
    setInterval(() => {
      if (document.hidden) return;
      const following = book.atUs !== null && book.atUs >= endUs - 1000;
      endUs = Math.max(endUs, Date.now() * 1000);
      slider.max = String(Math.ceil(endUs / 1000));
      if (following && !book.busy) setInstant(endUs);
      if (++ticks % LIVE_CANDLES_EVERY === 0) loadCandles(currentInterval, true).catch(fail);
    }, LIVE_EVERY_MS);
  }

  // --- start: the book and candles first (first paint), then the rest ---------------------
  let initial = endUs;
  try {
    if (cfg.at) initial = isoToMicros(/(Z|[+-]\d\d:\d\d)$/.test(cfg.at) ? cfg.at : cfg.at + "Z");
  } catch (_) {
    say(`Not an instant: ${cfg.at}; showing the end of the record.`, true);
  }
  setInstant(initial);
  // The book and the candles first; the calendar and the bid/ask chart (the
  // slowest requests) after them, so that they do not hold them up.
  // Coverage and book snapshots are heavy endpoints, of which the API runs
  // only a few at once per key (backtest_api/limits.py): ask one at a time.
  loadCandles(currentInterval).catch(fail).then(async () => {
    if (cfg.calendar) await loadCalendar().catch(fail);
    await loadSpread().catch(fail);
  });
  window.addEventListener("resize", () => { if (book.data) drawDepth(book.data); });
})();
