// The quote page: a board of quotes (flash on each change), a box to add and remove symbols,
// and for the selected symbol a 5-level depth ladder and live 1-minute candles. It runs on
// tickgate.js; the page's own URL may carry ?token=... (auth = jwt) and ?symbols=A,B.
import { TickgateClient } from "./tickgate.js";

const params = new URLSearchParams(window.location.search);
const client = new TickgateClient("/", { token: params.get("token"), protocol: params.get("protocol") || "json" });
const rows = new Map(); // symbol -> row cells
const candles = new Map(); // symbol -> Map(bar open ms -> bar)
let selected = null;

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 2) => (v === undefined || v === null ? "-" : Number(v).toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }));

client.addEventListener("state", (e) => {
  const { state, reason } = e.detail;
  const badge = $("state");
  badge.textContent = state.replace("_", " ");
  badge.className = `state ${state}`;
  badge.dataset.state = state;
  $("reason").textContent = reason || "";
  document.body.dataset.state = state;
});
client.addEventListener("status", (e) => { $("reason").textContent = `${e.detail.state}: ${e.detail.reason}`; });
client.addEventListener("error", (e) => { $("error").textContent = `${e.detail.code}: ${e.detail.msg}`; });
client.addEventListener("update", (e) => {
  const u = e.detail;
  if (u.type === "quote") onQuote(u);
  else if (u.type === "depth" && u.symbol === selected) onDepth(u);
  else if (u.type === "kline") onKline(u);
});

function addRow(symbol) {
  if (rows.has(symbol)) return;
  const tr = document.createElement("tr");
  tr.dataset.symbol = symbol;
  tr.innerHTML = "<td></td><td class=last>-</td><td class=change>-</td><td class=pct>-</td><td class=volume>-</td><td><button class=remove type=button title=remove>×</button></td>";
  tr.cells[0].textContent = symbol;
  tr.addEventListener("click", () => select(symbol));
  tr.querySelector("button.remove").addEventListener("click", (ev) => { ev.stopPropagation(); remove(symbol); });
  $("quotes").tBodies[0].appendChild(tr);
  rows.set(symbol, { tr, last: tr.cells[1], change: tr.cells[2], pct: tr.cells[3], volume: tr.cells[4], price: null, updates: 0 });
}

function onQuote(q) {
  addRow(q.symbol);
  const row = rows.get(q.symbol);
  const cls = q.change > 0 ? "up" : q.change < 0 ? "down" : "";
  row.last.textContent = fmt(q.lastDealPrice, 3);
  row.change.textContent = fmt(q.change, 3);
  row.pct.textContent = q.changePercent === undefined ? "-" : `${fmt(q.changePercent)}%`;
  row.volume.textContent = fmt(q.volume, 0);
  for (const cell of [row.change, row.pct]) cell.className = cell.className.split(" ")[0] + (cls ? ` ${cls}` : "");
  if (row.price !== null && q.lastDealPrice !== row.price) {
    row.tr.classList.remove("flash-up", "flash-down");
    void row.tr.offsetWidth; // restart the animation
    row.tr.classList.add(q.lastDealPrice > row.price ? "flash-up" : "flash-down");
  }
  row.price = q.lastDealPrice;
  row.updates += 1;
  row.tr.dataset.updates = String(row.updates);
  row.tr.dataset.seq = String(q.seq);
}

function onDepth(d) {
  const body = $("depth").tBodies[0];
  body.textContent = "";
  const line = (lv, side) => {
    const tr = body.insertRow();
    for (const [v, digits] of [[lv.o, 0], [lv.v, 0], [lv.p, 3]]) tr.insertCell().textContent = fmt(v, digits);
    const c = tr.insertCell();
    c.textContent = side;
    c.className = side;
    tr.cells[2].className = side;
  };
  [...(d.ask || [])].slice(0, 5).reverse().forEach((lv) => line(lv, "ask"));
  (d.bid || []).slice(0, 5).forEach((lv) => line(lv, "bid"));
}

function onKline(k) {
  if (!candles.has(k.symbol)) candles.set(k.symbol, new Map());
  const bars = candles.get(k.symbol);
  bars.set(k.time, k);
  while (bars.size > 60) bars.delete(bars.keys().next().value);
  if (k.symbol === selected) draw();
}

function draw() {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const bars = [...(candles.get(selected) || new Map()).values()].sort((a, b) => a.time - b.time);
  canvas.dataset.bars = String(bars.length);
  if (!bars.length) return;
  const hi = Math.max(...bars.map((b) => b.highPrice));
  const lo = Math.min(...bars.map((b) => b.lowPrice));
  const span = hi - lo || 1;
  const y = (p) => 10 + (canvas.height - 20) * (1 - (p - lo) / span);
  const w = canvas.width / 60;
  bars.forEach((b, i) => {
    const x = i * w + w / 2;
    g.strokeStyle = g.fillStyle = b.closePrice >= b.openPrice ? "#3ecf8e" : "#f2555a";
    g.beginPath();
    g.moveTo(x, y(b.highPrice));
    g.lineTo(x, y(b.lowPrice));
    g.stroke();
    const top = y(Math.max(b.openPrice, b.closePrice));
    g.fillRect(x - w * 0.35, top, w * 0.7, Math.max(1, y(Math.min(b.openPrice, b.closePrice)) - top));
  });
}

async function select(symbol) {
  if (selected === symbol) return;
  const previous = selected;
  selected = symbol;
  $("selected").textContent = symbol;
  for (const [s, row] of rows) row.tr.classList.toggle("selected", s === symbol);
  $("depth").tBodies[0].textContent = "";
  draw();
  if (previous) await client.unsubscribe([previous], ["depth", "kline@1"]).catch(() => {});
  await client.subscribe([symbol], ["depth", "kline@1"]).catch((e) => { $("error").textContent = e.message; });
}

async function add(text) {
  const symbols = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (!symbols.length) return;
  $("error").textContent = "";
  try {
    const reply = await client.subscribe(symbols, ["quote"]);
    reply.symbols.forEach(addRow);
    if (!selected && reply.symbols.length) select(reply.symbols[0]);
  } catch (e) {
    $("error").textContent = e.message;
  }
}

async function remove(symbol) {
  await client.unsubscribe([symbol]).catch(() => {});
  rows.get(symbol)?.tr.remove();
  rows.delete(symbol);
  if (selected === symbol) {
    selected = null;
    $("selected").textContent = "-";
    $("depth").tBodies[0].textContent = "";
    draw();
  }
}

$("add").addEventListener("submit", (e) => { e.preventDefault(); add($("symbol").value); $("symbol").value = ""; });
$("batch").addEventListener("change", (e) => client.setMode(e.target.checked ? "batch" : "immediate", e.target.checked ? 500 : undefined));
$("drop").addEventListener("click", () => client.drop());
window.tickgate = client; // for the console (and the end-to-end test)
client.connect().then(() => add(params.get("symbols") || "AAPL$US,TSLA$US,700$HK"));
