// The dashboard: login, the initial state of every panel by REST, then live events over the
// WebSocket. Every panel shows loading / empty / error / stale honestly, and a banner says when
// the live feed or the backend is down and how old the data on screen is. A second banner says
// when trading cannot happen: the engine's alerts (kill switch, a chain down or not trading,
// trades failing, a balance below its floor), and a chain whose nodes are all unhealthy as soon
// as their status arrives. Native amounts carry their chain's symbol: ETH and POL never add up.

import { config } from "/config.js";
import uPlot from "/vendor/uplot/uPlot.esm.js";
import { Api, ApiError, Stream } from "./api.js";
import {
  ageOf,
  formatAge,
  formatGwei,
  formatMs,
  formatNative,
  formatTime,
  formatTokenAmount,
  tokenKey,
  gweiForChart,
  nativeForChart,
  shortHex,
  toBig,
} from "./format.js";

const host = config.host || location.hostname;
const urlHost = host.includes(":") ? `[${host}]` : host;
const GATEWAY = `${location.protocol}//${urlHost}:${config.gatewayPort}`;
const WS_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${urlHost}:${config.wsPort}`;
const HEALTH_POLL_MS = Math.max(1, config.healthPollS || 10) * 1000;
// The trading state carries the engine's alerts; it is re-read this often besides after changes.
const ALERT_POLL_MS = 3000;
const EVENTS = [
  "block.new", "chain.reorg", "node.status", "gas.price", "mev.opportunity",
  "trade.submitted", "trade.included", "trade.failed", "agent.status", "exploit.alert",
];
const MAX_OPPS = 1000;
const TAPE_ROWS = 100;
const MAX_POINTS = 300;
const CHART_EVERY_MS = 1000;
const SESSION_KEY = "mevstack.session";
// Connected but nothing arrived for this long: every chain has stopped producing blocks, or the
// engine has stopped publishing; either way the screen is not current.
const SILENT_DATA_S = 60;
const PALETTE = ["#5aa0f0", "#3fb97a", "#e0a030", "#c070e0", "#e05050", "#40c0c0", "#a0a0a0"];
// Which Opportunity fields equal what the chain does, and which are estimates (docs/contracts.md).
const EXACT_FIELDS = ["amount_in", "amount_out", "gross_profit"];
const ESTIMATE_FIELDS = ["gas_estimate", "gas_price_wei", "gas_cost_wei", "net_profit_wei"];

// --- tiny DOM helper (text only: nothing from the API is ever parsed as HTML) ------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const statusCell = (s) => h("td", { class: `st-${s}` }, s ?? "—");
const num = (text, cls = "") => h("td", { class: `num ${cls}` }, text);
const sign = (value) => {
  const big = toBig(value);
  return big === null ? "" : big > 0n ? "pos" : big < 0n ? "neg" : "";
};

// --- state ---------------------------------------------------------------------------------

class Panel {
  constructor(id, emptyText) {
    this.el = $(id);
    this.stateEl = this.el.querySelector(".panel-state");
    this.body = this.el.querySelector(".body");
    this.emptyText = emptyText;
    this.status = "loading";
    this.error = "";
    this.stale = null; // {age_s, source} when the gateway served a cached answer
    this.loadedAt = 0;
  }

  ok(meta) {
    this.status = "ready";
    this.error = "";
    this.loadedAt = Date.now();
    this.stale = meta && meta.stale ? { age: meta.age_s ?? null, source: meta.source } : null;
  }

  fail(err) {
    this.status = "error";
    this.error = err instanceof ApiError ? `${err.message} (${err.code})` : String(err);
  }

  live() {
    this.stale = null;
    if (this.status !== "ready") {
      this.status = "ready";
      this.error = "";
    }
  }

  renderState(isEmpty) {
    const s = this.stateEl;
    s.className = "panel-state";
    this.el.classList.toggle("stale", Boolean(this.stale));
    if (this.status === "loading") s.textContent = "loading…";
    else if (this.status === "error") {
      s.className = "panel-state error";
      s.textContent = this.error;
    } else if (this.stale) {
      s.className = "panel-state stale";
      s.textContent = `stale: cached answer ${formatAge(this.stale.age)} old`;
    } else s.textContent = isEmpty ? this.emptyText : "";
    s.dataset.state = this.status === "ready" && this.stale ? "stale" : this.status;
  }
}

const S = {
  session: null,
  api: null,
  stream: null,
  nodes: new Map(),
  heads: new Map(),
  blockLog: [],
  gas: new Map(),
  gasHistory: new Map(),
  opps: new Map(),
  oppOrder: [],
  trades: new Map(),
  trading: null,
  agents: new Map(),
  exploits: null,
  exploitsNote: "",
  health: null,
  healthError: "",
  lastLiveAt: 0,
  reorgs: 0,
  resyncs: 0,
  lastResync: "",
  detailId: null,
  detailNote: "",
  panels: {},
  dirty: new Set(),
  chartsDirty: false,
  timers: [],
  tokens: new Map(), // chain:address -> {decimals, symbol}, as the API stated them
  oppChains: new Set(),
  timing: { firstRest: 0, firstEvent: 0 }, // ms since navigation start (benchmarks read it)
};

const canTrade = () => S.session && S.session.scopes.some((s) => s === "trade" || s === "admin");
const isAdmin = () => S.session && S.session.scopes.includes("admin");

function markDirty(...names) {
  for (const n of names) S.dirty.add(n);
  if (S.frame) return;
  S.frame = requestAnimationFrame(() => {
    S.frame = 0;
    const todo = [...S.dirty];
    S.dirty.clear();
    for (const name of todo) RENDER[name]();
  });
}

// --- REST loading ------------------------------------------------------------------------

async function load(panelName, path, apply) {
  const panel = S.panels[panelName];
  try {
    const answer = await S.api.get(path);
    apply(answer.data, answer.meta);
    panel.ok(answer.meta);
    if (!S.timing.firstRest) S.timing.firstRest = performance.now();
    if (!(answer.meta && answer.meta.stale)) S.lastLiveAt = Math.max(S.lastLiveAt, Date.now());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    panel.fail(err);
  }
  markDirty(panelName);
}

function loadAll() {
  const started = Date.now();
  return Promise.all([
    load("nodes", "/api/nodes", (rows) => {
      S.nodes.clear();
      for (const n of rows) S.nodes.set(`${n.chain}|${n.url}`, n);
    }),
    load("gas", "/api/gas", (rows) => {
      for (const q of rows) applyGas(q, q.updated_at);
    }),
    load("opps", "/api/mev/opportunities?limit=200", (rows) => {
      // Anything the stream delivered while this request was in flight is newer: keep it.
      for (const o of [...rows].reverse()) {
        const known = S.opps.get(o.id);
        if (known && known._liveAt && known._liveAt >= started) continue;
        upsertOpp(o, 0);
      }
    }),
    load("trades", "/api/trades?limit=200", (rows) => {
      for (const t of rows) {
        const known = S.trades.get(t.id);
        if (known && known._liveAt && known._liveAt >= started) continue;
        S.trades.set(t.id, t);
      }
      S.chartsDirty = true;
    }),
    loadTrading(),
    load("agents", "/api/agents", (rows) => {
      S.agents.clear();
      for (const a of rows) S.agents.set(a.id, a);
    }),
    loadExploits(),
  ]);
}

function loadTrading() {
  return load("trading", "/api/trading/state", (state) => {
    S.trading = state;
    markDirty("exploits", "opps", "trades", "alerts");
  });
}

async function loadExploits() {
  const panel = S.panels.exploits;
  try {
    const answer = await S.api.get("/api/exploits");
    S.exploits = answer.data;
    S.exploitsNote = "";
    panel.ok(answer.meta);
  } catch (err) {
    if (err instanceof ApiError && err.status === 503) {
      // No exploit feed on this engine: the blocklist (trading state) is what protects trades.
      S.exploits = null;
      S.exploitsNote = `exploit feed: ${err.message}; showing the blocklist`;
      panel.ok(null);
    } else if (!(err instanceof ApiError && err.status === 401)) panel.fail(err);
  }
  markDirty("exploits");
}

async function pollHealth() {
  const wasDown = S.health === null || S.health.status !== "ok";
  try {
    S.health = await S.api.health();
    S.healthError = "";
    const down = S.health.status !== "ok";
    // Recovered: reload what only REST carries. Just failed: reload too, so every panel shows
    // the gateway's last good answer marked stale with its age instead of a silent old value.
    // A panel still showing a cached (stale) answer is retried while the gateway is healthy, so
    // the banner clears as soon as fresh data exists rather than at the next related event.
    const anyStale = Object.values(S.panels).some((p) => p.stale);
    if (S.healthChecked && (wasDown !== down || (!down && anyStale))) loadAll();
  } catch (err) {
    S.health = null;
    S.healthError = err.message;
  }
  S.healthChecked = true;
  markDirty("system");
  updateBanner();
}

// --- live events ---------------------------------------------------------------------------

// Decimals are shown only when the API states them (on an opportunity or a trade); otherwise
// amounts stay in base units. True when the token was not known before.
function learnToken(x) {
  if (!x.token || !x.chain || !Number.isInteger(x.token_decimals)) return false;
  const key = tokenKey(x.chain, x.token);
  if (S.tokens.has(key)) return false;
  S.tokens.set(key, { decimals: x.token_decimals, symbol: x.token_symbol || "" });
  return true;
}

function upsertOpp(o, liveAt) {
  if (learnToken(o)) markDirty("trades"); // trades of this token can now be shown in its units
  const known = S.opps.has(o.id);
  S.oppChains.add(o.chain);
  S.opps.set(o.id, liveAt ? { ...o, _liveAt: liveAt } : o);
  if (!known) {
    S.oppOrder.unshift(o.id);
    if (S.oppOrder.length > MAX_OPPS) {
      for (const id of S.oppOrder.splice(MAX_OPPS)) S.opps.delete(id);
    }
  }
}

function applyGas(q, at) {
  S.gas.set(q.chain, q);
  const series = S.gasHistory.get(q.chain) || { t: [], base: [], p50: [], block: -1 };
  if (q.block_number !== series.block) {
    series.block = q.block_number;
    series.t.push((Date.parse(at || q.updated_at) || Date.now()) / 1000);
    series.base.push(gweiForChart(q.base_fee_wei));
    series.p50.push(gweiForChart(q.priority_fee_wei && q.priority_fee_wei.p50));
    if (series.t.length > MAX_POINTS) {
      for (const key of ["t", "base", "p50"]) series[key].splice(0, series[key].length - MAX_POINTS);
    }
  }
  S.gasHistory.set(q.chain, series);
  S.chartsDirty = true;
}

function onEvent(message) {
  const now = Date.now();
  if (!S.timing.firstEvent) S.timing.firstEvent = performance.now();
  S.lastLiveAt = now;
  const data = message.data || {};
  switch (message.event) {
    case "node.status":
      S.nodes.set(`${data.chain}|${data.url}`, data);
      S.panels.nodes.live();
      markDirty("nodes");
      break;
    case "block.new":
      S.heads.set(message.chain, { number: data.number ?? data.block_number, at: now });
      // What blocks reached the page, per chain: a gap here is a gap in the live feed.
      S.blockLog.push([message.chain, data.number, message.seq]);
      if (S.blockLog.length > 2000) S.blockLog.splice(0, 1000);
      markDirty("nodes");
      break;
    case "gas.price":
      applyGas(data, message.ts);
      S.panels.gas.live();
      markDirty("gas");
      break;
    case "mev.opportunity":
      upsertOpp(data, now);
      S.panels.opps.live();
      markDirty("opps");
      if (S.detailId === data.id) markDirty("detail");
      break;
    case "trade.submitted":
    case "trade.included":
    case "trade.failed":
      S.trades.set(data.id, { ...data, _liveAt: now });
      S.panels.trades.live();
      S.chartsDirty = true;
      markDirty("trades");
      throttledTrading();
      break;
    case "agent.status":
      if (data.id) S.agents.set(data.id, { ...(S.agents.get(data.id) || {}), ...data });
      S.panels.agents.live();
      markDirty("agents");
      break;
    case "exploit.alert":
      loadExploits();
      loadTrading();
      break;
    case "chain.reorg":
      S.reorgs += 1;
      markDirty("system");
      break;
    default:
      break;
  }
}

let tradingTimer = 0;
let tradingAgain = false;
// At most one reload per 2 s, yet always one after the latest trade event: an inclusion that
// lands while a reload is pending moves the day's P&L, which only the trading state reports.
function throttledTrading() {
  if (tradingTimer) {
    tradingAgain = true;
    return;
  }
  tradingTimer = setTimeout(() => {
    tradingTimer = 0;
    loadTrading();
    if (tradingAgain) {
      tradingAgain = false;
      throttledTrading();
    }
  }, 2000);
}

// --- rendering -----------------------------------------------------------------------------

function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows));
}

function renderNodes() {
  const p = S.panels.nodes;
  const rows = [...S.nodes.values()].sort((a, b) => (a.chain + a.url).localeCompare(b.chain + b.url));
  p.renderState(rows.length === 0);
  p.body.replaceChildren(
    rows.length === 0 ? "" : table(
      ["chain", "endpoint", "state", "head", "lag", "latency p50/p99", ""],
      rows.map((n) => h("tr", { dataset: { chain: n.chain } },
        h("td", {}, n.chain),
        h("td", { class: "mono", title: n.url }, n.url),
        statusCell(n.state),
        num(n.head_block ?? "—"),
        num(`${n.lag_blocks ?? "—"} blk / ${formatAge(n.head_age_s)}`),
        num(`${formatMs(n.latency_ms_p50)} / ${formatMs(n.latency_ms_p99)}`),
        h("td", {}, n.is_primary ? h("span", { class: "badge ok" }, "primary") : ""),
      )),
    ),
  );
}

function renderGas() {
  const p = S.panels.gas;
  const rows = [...S.gas.values()].sort((a, b) => a.chain.localeCompare(b.chain));
  p.renderState(rows.length === 0);
  p.body.replaceChildren(
    rows.length === 0 ? "" : table(
      ["chain", "block", "base fee", "next base fee", "priority p10 / p50 / p90"],
      rows.map((q) => {
        const pf = q.priority_fee_wei || {};
        return h("tr", { dataset: { chain: q.chain } },
          h("td", {}, q.chain),
          num(q.block_number),
          num(formatGwei(q.base_fee_wei)),
          num(formatGwei(q.next_base_fee_wei)),
          num(`${formatGwei(pf.p10)} / ${formatGwei(pf.p50)} / ${formatGwei(pf.p90)}`));
      }),
    ),
  );
}

function filteredOpps() {
  const chain = $("f-chain").value;
  const kind = $("f-kind").value;
  const status = $("f-status").value;
  const out = [];
  for (const id of S.oppOrder) {
    const o = S.opps.get(id);
    if (!o) continue;
    if ((chain && o.chain !== chain) || (kind && o.kind !== kind) || (status && o.status !== status)) continue;
    out.push(o);
    if (out.length >= TAPE_ROWS) break;
  }
  return out;
}

function pathText(o) {
  return (o.path || []).map((hop) => hop.dex).join(" → ");
}

// The tape is rebuilt at most every TAPE_EVERY_MS (nobody reads 50 rows a second) and reuses
// the row of an opportunity whose fields did not change, so a busy feed stays cheap to draw.
const TAPE_EVERY_MS = 250;
let tapeTimer = 0;
let tapeDrawnAt = 0;
const tapeRows = new Map(); // id -> {obj, tr}

function renderOpps() {
  const wait = tapeDrawnAt + TAPE_EVERY_MS - performance.now();
  if (wait > 0) {
    if (!tapeTimer) tapeTimer = setTimeout(() => { tapeTimer = 0; markDirty("opps"); }, wait);
    return;
  }
  tapeDrawnAt = performance.now();
  const p = S.panels.opps;
  const select = $("f-chain");
  for (const c of S.oppChains) {
    if (!select.querySelector(`option[value="${CSS.escape(c)}"]`)) select.append(h("option", { value: c }, c));
  }
  const rows = filteredOpps();
  p.renderState(rows.length === 0);
  $("opp-count").textContent = `${S.opps.size} tracked`;
  if (rows.length === 0) {
    p.body.replaceChildren();
    tapeRows.clear();
    return;
  }
  const keep = new Map();
  const trs = rows.map((o) => {
    const known = tapeRows.get(o.id);
    const tr = known && known.obj === o ? known.tr : h("tr", { dataset: { id: o.id }, onclick: () => openDetail(o.id) },
      h("td", {}, o.chain),
      h("td", {}, o.kind),
      h("td", {}, pathText(o)),
      num(formatTokenAmount(o.amount_in, o.chain, o.token, S.tokens)),
      num(native(o.net_profit_wei, o.chain), sign(o.net_profit_wei)),
      num(o.block_number),
      statusCell(o.status));
    keep.set(o.id, { obj: o, tr });
    return tr;
  });
  tapeRows.clear();
  for (const [id, row] of keep) tapeRows.set(id, row);
  let body = p.body.querySelector("tbody");
  if (!body) {
    p.body.replaceChildren(table(
      ["chain", "kind", "path", "amount in", "net profit (native)", "block", "status"], []));
    body = p.body.querySelector("tbody");
  }
  body.replaceChildren(...trs);
}

function fieldRow(label, value, tag) {
  return [h("dt", {}, label), h("dd", { class: "mono" }, value,
    tag ? h("span", { class: `tag ${tag}` }, tag) : "")];
}

function renderDetail() {
  const box = $("detail");
  const o = S.opps.get(S.detailId);
  if (!o) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const tok = (v) => formatTokenAmount(v, o.chain, o.token, S.tokens);
  const tagOf = (f) => (EXACT_FIELDS.includes(f) ? "exact" : ESTIMATE_FIELDS.includes(f) ? "estimate" : "");
  const execute = canTrade()
    ? h("button", { id: "execute", class: "danger", onclick: () => executeOpp(o.id) }, "Execute")
    : "";
  box.replaceChildren(
    h("header", {}, h("h2", {}, `Opportunity ${shortHex(o.id)}`),
      h("button", { onclick: () => { S.detailId = null; renderDetail(); } }, "Close")),
    h("dl", { class: "kv" },
      fieldRow("id", o.id),
      fieldRow("chain", `${o.chain} (${o.chain_id})`),
      fieldRow("kind", o.kind),
      fieldRow("status", o.status),
      fieldRow("block", `${o.block_number} (valid through ${o.expires_at_block})`),
      fieldRow("token", o.token),
      fieldRow("amount in", tok(o.amount_in), tagOf("amount_in")),
      fieldRow("amount out", tok(o.amount_out), tagOf("amount_out")),
      fieldRow("gross profit", tok(o.gross_profit), tagOf("gross_profit")),
      fieldRow("gas estimate", String(o.gas_estimate), tagOf("gas_estimate")),
      fieldRow("gas price", formatGwei(o.gas_price_wei), tagOf("gas_price_wei")),
      fieldRow("gas cost", native(o.gas_cost_wei, o.chain), tagOf("gas_cost_wei")),
      fieldRow("net profit", native(o.net_profit_wei, o.chain), tagOf("net_profit_wei")),
      fieldRow("trigger tx", o.trigger_tx || "—"),
      fieldRow("detected", o.detected_at || "—"),
    ),
    h("h2", {}, "Hops (every amount exact)"),
    table(["#", "dex", "pool", "in", "out"], (o.path || []).map((hop, i) => h("tr", {},
      h("td", {}, i + 1), h("td", {}, hop.dex),
      h("td", { class: "mono", title: hop.pool }, shortHex(hop.pool)),
      num(`${hop.amount_in} ${shortHex(hop.token_in)}`),
      num(`${hop.amount_out} ${shortHex(hop.token_out)}`)))),
    h("p", { class: "muted" }, "Raw amounts are the tokens' base units. Estimates are replaced ",
      "by exact figures once a trade is included."),
    h("div", { class: "controls" }, execute),
    h("p", { id: "execute-result", role: "status" }, S.detailNote),
  );
}

function openDetail(id) {
  S.detailId = id;
  S.detailNote = "";
  S.idempotencyKey = crypto.randomUUID();
  renderDetail();
}

async function executeOpp(id) {
  S.detailNote = "submitting…";
  renderDetail();
  try {
    const answer = await S.api.post(`/api/mev/opportunities/${encodeURIComponent(id)}/execute`,
      undefined, { "Idempotency-Key": S.idempotencyKey });
    const t = answer.data;
    S.trades.set(t.id, { ...t, _liveAt: Date.now() });
    S.detailNote = `trade ${t.id}: ${t.status}`;
    markDirty("trades");
  } catch (err) {
    S.detailNote = `execute refused: ${err.message}`;
  }
  renderDetail();
}

function renderTrades() {
  const p = S.panels.trades;
  const rows = [...S.trades.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  rows.forEach(learnToken);
  p.renderState(rows.length === 0);
  p.body.replaceChildren(
    rows.length === 0 ? "" : table(
      ["time", "chain", "status", "tx", "expected", "realized", "gas used", "gas cost", "net P&L"],
      rows.slice(0, 100).map((t) => h("tr", { dataset: { id: t.id } },
        h("td", {}, formatTime(t.created_at)),
        h("td", {}, t.chain),
        statusCell(t.status),
        h("td", { class: "hash" }, (t.tx_hashes || []).map(shortHex).join(" ") || "—"),
        num(formatTokenAmount(t.expected_profit, t.chain, t.token, S.tokens)),
        num(t.realized_profit == null ? "pending" : formatTokenAmount(t.realized_profit, t.chain, t.token, S.tokens)),
        num(t.gas_used ?? "—"),
        num(native(t.gas_cost_wei, t.chain)),
        num(native(t.net_pnl_wei, t.chain), sign(t.net_pnl_wei)),
      )),
    ),
  );
}

// The native currency's symbol of `chain`, as the trading state names it.
function symbolOf(chain) {
  const c = S.trading && S.trading.chains && S.trading.chains[chain];
  return (c && c.native_symbol) || "";
}

// Native wei of `chain` in whole units with its symbol (exact; "—" when absent).
function native(value, chain) {
  const text = formatNative(value);
  const symbol = symbolOf(chain);
  return text === "—" || !symbol ? text : `${text} ${symbol}`;
}

// The day's P&L summed per currency (never across currencies), e.g. "1.2 ETH · 3 POL".
function pnlTodayText(t) {
  const bySymbol = Object.entries(t.pnl_today_by_symbol || {});
  if (!bySymbol.length) return "—";
  return bySymbol.map(([symbol, wei]) => `${formatNative(wei)} ${symbol}`).join(" · ");
}

function renderTrading() {
  const p = S.panels.trading;
  const t = S.trading;
  p.renderState(!t);
  if (!t) {
    p.body.replaceChildren();
    return;
  }
  $("mode-badge").textContent = `mode: ${t.mode}`;
  $("kill-badge").hidden = !t.kill_switch;
  const chains = Object.entries(t.chains || {});
  const limitText = (limits, chain) => `limits${symbolOf(chain) ? ` (${symbolOf(chain)})` : ""}: ` +
    Object.entries(limits || {})
      .map(([k, v]) => `${k}=${/_wei$/.test(k) ? formatNative(v) : v}`).join(" · ");
  const controls = isAdmin()
    ? h("div", { class: "controls" },
      h("button", { id: "kill-toggle", class: t.kill_switch ? "" : "danger", onclick: () => confirmKill(!t.kill_switch) },
        t.kill_switch ? "Release kill switch" : "Engage kill switch"))
    : "";
  p.body.replaceChildren(
    h("dl", { class: "kv" },
      fieldRow("mode", t.mode),
      fieldRow("auto execute", String(t.auto_execute)),
      h("dt", {}, "kill switch"),
      h("dd", { id: "kill-state", class: t.kill_switch ? "st-failed" : "st-ok" },
        t.kill_switch ? `ON${t.kill_reason ? ` — ${t.kill_reason}` : ""}` : "off"),
      fieldRow("P&L today", `${pnlTodayText(t)} (${t.pnl_day || "—"})`),
    ),
    chains.length ? table(["chain", "in flight", "operator balance", "executor inventory", "P&L today", "paused"],
      chains.flatMap(([name, c]) => [h("tr", { dataset: { chain: name } },
        h("td", {}, name),
        num(c.in_flight),
        num(c.native_balance_wei == null ? "unknown" : native(c.native_balance_wei, name),
          (c.balance_low || []).includes("operator") ? "neg" : ""),
        num(c.executor_balance_wei == null ? "unknown" : native(c.executor_balance_wei, name),
          (c.balance_low || []).includes("executor") ? "neg" : ""),
        h("td", { class: `num pnl-today ${sign(c.pnl_today_wei)}` }, native(c.pnl_today_wei, name)),
        h("td", {}, c.paused ? `yes: ${c.paused_reason}` : "no")),
      h("tr", { class: "limits", dataset: { limitsOf: name } },
        h("td", { class: "mono wrap muted", colspan: 6 }, limitText(c.limits, name)))])) : "",
    h("p", { class: "muted" }, `blocklist: ${(t.blocklist || []).length} entries`),
    controls,
  );
}

function confirmKill(engage) {
  const modal = $("modal");
  const reason = h("input", { id: "kill-reason", placeholder: "reason (recorded in the audit log)" });
  const close = () => { modal.hidden = true; modal.replaceChildren(); };
  const confirm = h("button", {
    id: "kill-confirm",
    class: "danger",
    onclick: async () => {
      confirm.disabled = true;
      try {
        // The PATCH answer is the new state; a GET now could be the gateway's cached answer.
        const answer = await S.api.patch("/api/trading/state", { kill_switch: engage, reason: reason.value });
        close();
        S.trading = answer.data;
        S.panels.trading.ok(answer.meta);
        markDirty("trading", "exploits", "alerts");
      } catch (err) {
        note.textContent = err.message;
        confirm.disabled = false;
      }
    },
  }, engage ? "Engage: stop all trading" : "Release the kill switch");
  const note = h("p", { class: "error", role: "alert" });
  modal.replaceChildren(h("div", { class: "box", role: "dialog", "aria-modal": "true" },
    h("h2", {}, engage ? "Engage the kill switch?" : "Release the kill switch?"),
    h("p", {}, engage
      ? "No new trade is signed on any chain until it is released."
      : "Trading resumes within the configured limits."),
    reason,
    h("div", { class: "controls" }, confirm, h("button", { id: "kill-cancel", onclick: close }, "Cancel")),
    note));
  modal.hidden = false;
}

function renderAgents() {
  const p = S.panels.agents;
  const rows = [...S.agents.values()].sort((a, b) => a.id.localeCompare(b.id));
  p.renderState(rows.length === 0);
  p.body.replaceChildren(
    rows.length === 0 ? "" : table(
      ["agent", "state", "heartbeat", "items / results", "crashes", ""],
      rows.map((a) => {
        const c = a.counters || {};
        const running = a.state === "running" || a.state === "starting";
        const button = isAdmin()
          ? h("button", { class: "agent-toggle", dataset: { id: a.id }, onclick: () => toggleAgent(a.id, running) },
            running ? "Stop" : "Start")
          : "";
        return h("tr", { dataset: { id: a.id } },
          h("td", {}, a.id), statusCell(a.state),
          num(a.heartbeat_at ? formatAge(ageOf(a.heartbeat_at)) : "—"),
          num(`${c.items ?? "—"} / ${c.results ?? "—"}`), num(c.crashes ?? "—"), h("td", {}, button));
      }),
    ),
  );
}

async function toggleAgent(id, running) {
  try {
    const answer = await S.api.post(`/api/agents/${encodeURIComponent(id)}/${running ? "stop" : "start"}`);
    S.agents.set(id, answer.data);
    S.panels.agents.live();
  } catch (err) {
    S.panels.agents.fail(err);
  }
  markDirty("agents");
}

function renderExploits() {
  const p = S.panels.exploits;
  if (p.status === "loading" && S.trading) p.status = "ready";
  const alerts = S.exploits || [];
  const blocklist = (S.trading && S.trading.blocklist) || [];
  p.renderState(false);
  const describe = (e) => Object.entries(e).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k}: ${v}`).join(" · ");
  p.body.replaceChildren(
    S.exploitsNote ? h("p", { class: "muted" }, S.exploitsNote) : "",
    S.exploits ? h("div", {}, h("h2", {}, `alerts (${alerts.length})`),
      alerts.length ? h("ul", {}, alerts.slice(0, 50).map((a) => h("li", { class: "mono" }, describe(a))))
        : h("p", { class: "muted" }, "no exploit alerts")) : "",
    h("h2", {}, `blocklist (${blocklist.length})`),
    blocklist.length ? h("ul", {}, blocklist.map((b) => h("li", { class: "mono" }, describe(b))))
      : h("p", { class: "muted" }, S.trading ? "blocklist is empty" : "trading state not loaded"),
  );
}

function dataAge() {
  return S.lastLiveAt ? (Date.now() - S.lastLiveAt) / 1000 : null;
}

function renderSystem() {
  const p = S.panels.system;
  p.status = "ready";
  p.renderState(false);
  const health = S.health;
  p.body.replaceChildren(h("dl", { class: "kv" },
    fieldRow("live feed", S.stream ? S.stream.state : "—"),
    fieldRow("last seq", S.stream ? String(S.stream.lastSeq) : "—"),
    fieldRow("backend", health ? health.status : `unreachable (${S.healthError || "not checked"})`),
    ...(health && health.backends ? health.backends.map((b) => fieldRow("engine",
      typeof b === "string" ? b : `${b.url || ""} ${b.healthy === false ? "down" : b.healthy === true ? "up" : ""}`)) : []),
    fieldRow("data age", formatAge(dataAge())),
    fieldRow("reorgs seen", String(S.reorgs)),
    fieldRow("resyncs", S.resyncs ? `${S.resyncs} (${S.lastResync})` : "0"),
    fieldRow("gateway", GATEWAY),
    fieldRow("session", S.session ? `${S.session.name} (${S.session.scopes.join(",")}), until ${formatTime(S.session.expires_at)}` : "—"),
    fieldRow("version", config.version),
  ));
}

function updateBanner() {
  const banner = $("stale-banner");
  const age = formatAge(dataAge());
  const problems = [];
  if (S.stream && S.stream.state !== "live") problems.push(`live feed ${S.stream.state}${S.wsDetail ? ` (${S.wsDetail})` : ""}`);
  if (S.healthChecked && (!S.health || S.health.status !== "ok")) {
    problems.push(S.health ? `gateway backend ${S.health.status}` : `gateway unreachable`);
  }
  const silent = dataAge();
  if (S.stream && S.stream.state === "live" && silent !== null && silent > SILENT_DATA_S) {
    problems.push(`no new data for ${formatAge(silent)}`);
  }
  const stalePanels = Object.entries(S.panels).filter(([, p]) => p.stale).map(([n]) => n);
  if (stalePanels.length) problems.push(`cached data in ${stalePanels.join(", ")}`);
  banner.hidden = problems.length === 0;
  banner.dataset.problems = problems.join("; ");
  if (problems.length) banner.textContent = `Stale data — ${problems.join("; ")}. Data on screen is ${age} old.`;
}

// What stops trading, worst first: the engine's alerts, and (before the engine's next word) a
// chain whose every node the live feed reports unhealthy.
function tradingProblems() {
  const alerts = [...((S.trading && S.trading.alerts) || [])];
  const byChain = new Map();
  for (const n of S.nodes.values()) {
    if (!byChain.has(n.chain)) byChain.set(n.chain, []);
    byChain.get(n.chain).push(n.state);
  }
  for (const [chain, states] of byChain) {
    const known = alerts.some((a) => a.kind === "chain_down" && a.chain === chain);
    if (!known && states.length && !states.includes("ok")) {
      alerts.push({ kind: "chain_down", chain, message: `no healthy node (${states.join(", ")})` });
    }
  }
  return alerts;
}

const ALERT_TITLES = {
  kill_switch: "Kill switch ON",
  chain_down: "Chain down",
  chain_not_trading: "Not trading",
  trades_failing: "Trades failing",
  balance_low: "Balance low",
};

function renderAlerts() {
  const banner = $("alert-banner");
  const alerts = tradingProblems();
  banner.hidden = alerts.length === 0;
  banner.dataset.kinds = alerts.map((a) => a.kind).join(" ");
  banner.replaceChildren(...alerts.map((a) => h("div", { class: "alert", dataset: { kind: a.kind, chain: a.chain || "" } },
    h("strong", {}, `${ALERT_TITLES[a.kind] || a.kind}${a.chain ? ` · ${a.chain}` : ""}: `),
    a.message,
    a.since ? h("span", { class: "muted" }, ` (since ${formatTime(a.since)})`) : "")));
}

function renderCharts() {
  if (!S.chartsDirty) return;
  S.chartsDirty = false;
  const gasChains = [...S.gasHistory.keys()].sort();
  S.gasChart = drawChart(S.gasChart, $("gas-chart"), gasChains,
    gasChains.map((c) => { const s = S.gasHistory.get(c); return [s.t, s.base]; }), "base fee (gwei)");
  const byChain = new Map();
  const done = [...S.trades.values()].filter((t) => toBig(t.net_pnl_wei) !== null && t.status !== "pending" && t.status !== "submitted")
    .sort((a, b) => (a.updated_at || "").localeCompare(b.updated_at || ""));
  for (const t of done) {
    const s = byChain.get(t.chain) || { t: [], v: [], sum: 0n };
    s.sum += toBig(t.net_pnl_wei);
    s.t.push((Date.parse(t.updated_at) || Date.now()) / 1000);
    s.v.push(nativeForChart(s.sum.toString()));
    byChain.set(t.chain, s);
  }
  const pnlChains = [...byChain.keys()].sort();
  S.pnlChart = drawChart(S.pnlChart, $("pnl-chart"), pnlChains,
    pnlChains.map((c) => [byChain.get(c).t, byChain.get(c).v]), "cumulative net P&L (native)");
}

// Enough decimals to tell neighbouring ticks apart (the axis is a picture; tables are exact).
function tickLabels(_, ticks, _axis, _space, increment) {
  const decimals = Math.min(12, Math.max(0, -Math.floor(Math.log10(increment || 1))));
  return ticks.map((v) => v.toFixed(decimals));
}

// uPlot wants one shared x axis: merge each chain's times, with gaps where a chain has none.
function drawChart(chart, el, names, series, label) {
  if (names.length === 0) {
    if (chart) chart.destroy();
    el.replaceChildren(h("p", { class: "muted" }, `${label}: no data yet`));
    return null;
  }
  const xs = [...new Set(series.flatMap(([t]) => t))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = series.map(([t, v]) => {
    const out = new Array(xs.length).fill(null);
    t.forEach((x, i) => { out[index.get(x)] = v[i]; });
    return out;
  });
  const data = [xs, ...ys];
  const key = names.join(",");
  if (chart && chart._key === key) {
    chart.setData(data);
    return chart;
  }
  if (chart) chart.destroy();
  el.replaceChildren();
  const made = new uPlot({
    width: Math.max(240, el.clientWidth || 400),
    height: 160,
    title: label,
    // uPlot spans a lone point (a first trade) over 86400 / 1e-3 s, years: a minute each side.
    scales: { x: { time: true, range: (u, min, max) => (u.data[0].length === 1 ? [u.data[0][0] - 60, u.data[0][0] + 60] : [min, max]) } },
    axes: [
      { stroke: "#8a96a5", grid: { stroke: "#222a33" } },
      { stroke: "#8a96a5", grid: { stroke: "#222a33" }, size: 80, values: tickLabels },
    ],
    series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], spanGaps: true, width: 1.5 }))],
  }, data, el);
  made._key = key;
  return made;
}

const RENDER = {
  nodes: () => { renderNodes(); renderAlerts(); },
  alerts: renderAlerts,
  gas: renderGas,
  opps: renderOpps,
  detail: renderDetail,
  trades: renderTrades,
  trading: renderTrading,
  agents: renderAgents,
  exploits: renderExploits,
  system: renderSystem,
};

// --- session -------------------------------------------------------------------------------

function showLogin(message = "") {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login-token").focus();
}

function logout(message = "") {
  if (S.stream) S.stream.stop();
  S.stream = null;
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
  clearTimeout(S.expiryTimer);
  S.session = null;
  sessionStorage.removeItem(SESSION_KEY);
  showLogin(message);
}

function start(session) {
  S.session = session;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  $("login").hidden = true;
  $("app").hidden = false;
  $("who").textContent = `${session.name} · ${session.scopes.join(", ")}`;
  const msLeft = Date.parse(session.expires_at) - Date.now();
  S.expiryTimer = setTimeout(() => logout("Your session expired; sign in again."), Math.max(0, msLeft));
  S.panels = {
    nodes: new Panel("panel-nodes", "no node status yet"),
    gas: new Panel("panel-gas", "no gas quote yet"),
    opps: new Panel("panel-opps", "no opportunities match"),
    trades: new Panel("panel-trades", "no trades yet"),
    trading: new Panel("panel-trading", "no trading state"),
    agents: new Panel("panel-agents", "no agents"),
    exploits: new Panel("panel-exploits", ""),
    system: new Panel("panel-system", ""),
  };
  for (const name of Object.keys(RENDER)) if (name !== "detail") markDirty(name);
  S.stream = new Stream(WS_URL, {
    token: () => S.session && S.session.session_token,
    events: EVENTS,
    onEvent,
    onResync: (reason) => {
      S.resyncs += 1;
      S.lastResync = reason;
      markDirty("system");
      loadAll();
    },
    onState: (state, detail) => {
      S.wsDetail = detail;
      const badge = $("ws-state");
      badge.textContent = state === "live" ? "live" : state;
      badge.className = `badge ${state === "live" ? "ok" : "warn"}`;
      updateBanner();
      markDirty("system");
    },
    onAuthFailed: (why) => logout(why),
  });
  S.stream.start();
  loadAll();
  pollHealth();
  S.timers.push(setInterval(pollHealth, HEALTH_POLL_MS));
  S.timers.push(setInterval(loadTrading, ALERT_POLL_MS));
  S.timers.push(setInterval(() => { updateBanner(); markDirty("system"); }, 1000));
  S.timers.push(setInterval(renderCharts, CHART_EVERY_MS));
}

function boot() {
  S.api = new Api(GATEWAY, {
    token: () => S.session && S.session.session_token,
    onUnauthorized: () => logout("Your session is no longer valid; sign in again."),
  });
  for (const id of ["f-chain", "f-kind", "f-status"]) $(id).addEventListener("change", () => markDirty("opps"));
  $("logout").addEventListener("click", () => logout(""));
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("login-token").value.trim();
    $("login-error").textContent = "";
    try {
      const session = await S.api.login(token);
      $("login-token").value = "";
      start(session);
    } catch (err) {
      $("login-error").textContent = `Sign-in failed: ${err.message}`;
    }
  });
  const saved = sessionStorage.getItem(SESSION_KEY);
  const session = saved ? JSON.parse(saved) : null;
  if (session && Date.parse(session.expires_at) > Date.now()) start(session);
  else showLogin();
  window.__mevstack = S; // lets the benchmarks and tests read the page's state
}

boot();
