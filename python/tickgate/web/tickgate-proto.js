// tickgate-proto.js: decodes the gateway's binary frames (tickgate.v1.ServerMessage,
// proto/tickgate/v1/market_data.proto) into the same objects as its JSON messages, so
// tickgate.js handles both alike. A reader of the protobuf wire format for this one schema
// (varints, 64-bit doubles, length-delimited fields), small enough to need no library; fields it
// does not know are skipped, as protobuf requires, so a newer gateway's additions do no harm.

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.i = 0;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get done() { return this.i >= this.b.length; }
  varint() {
    let result = 0, scale = 1, byte;
    do {
      if (this.i >= this.b.length) throw new Error("truncated varint");
      byte = this.b[this.i++];
      result += (byte & 0x7f) * scale; // exact to 2^53: seqs and epoch ms fit
      scale *= 128;
    } while (byte & 0x80);
    return result;
  }
  double() { const v = this.view.getFloat64(this.i, true); this.i += 8; return v; }
  bytes() { const n = this.varint(); const out = this.b.subarray(this.i, this.i + n); this.i += n; return out; }
  string() { return new TextDecoder().decode(this.bytes()); }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.i += 8;
    else if (wire === 2) {
      const n = this.varint(); // read first: `this.i += this.varint()` would lose its advance
      this.i += n;
    }
    else if (wire === 5) this.i += 4;
    else throw new Error(`wire type ${wire}`);
  }
  // Calls fn(field, wire) for each field; fn returns false to have it skipped.
  each(fn) {
    while (!this.done) {
      const key = this.varint();
      const field = Math.floor(key / 8), wire = key & 7;
      if (fn(field, wire) === false) this.skip(wire);
    }
  }
}

const sub = (r) => new Reader(r.bytes());

function fields(r, spec, out = {}) {
  // spec: field number -> [name, kind]; kind: "string", "double", "varint", "bool", "strings"
  r.each((field, wire) => {
    const s = spec[field];
    if (!s) return false;
    const [name, kind] = s;
    if (kind === "string") out[name] = r.string();
    else if (kind === "double") out[name] = r.double();
    else if (kind === "varint") out[name] = r.varint();
    else if (kind === "bool") out[name] = r.varint() !== 0;
    else if (kind === "strings") (out[name] ||= []).push(r.string());
    else return false;
    return true;
  });
  return out;
}

const QUOTE = { 1: ["lastDealPrice", "double"], 2: ["openPrice", "double"], 3: ["highPrice", "double"], 4: ["lowPrice", "double"], 5: ["prevClose", "double"], 6: ["change", "double"], 7: ["changePercent", "double"], 8: ["volume", "double"], 9: ["turnover", "double"], 10: ["status", "varint"] };
const TICK = { 1: ["lastDealPrice", "double"], 2: ["volume", "double"], 3: ["direction", "varint"], 4: ["session", "varint"], 5: ["turnover", "double"], 6: ["status", "varint"], 7: ["cumulativeVolume", "double"], 8: ["change", "double"], 9: ["changePercent", "double"] };
const LEVEL = { 1: ["po", "varint"], 2: ["p", "double"], 3: ["v", "double"], 4: ["o", "double"] };
const KLINE = { 1: ["period", "varint"], 2: ["time", "varint"], 3: ["openPrice", "double"], 4: ["highPrice", "double"], 5: ["lowPrice", "double"], 6: ["closePrice", "double"], 7: ["volume", "double"], 8: ["turnover", "double"] };
const REPLY = { 1: ["type", "string"], 2: ["action", "string"], 3: ["msg", "string"], 4: ["symbols", "strings"], 5: ["types", "strings"], 6: ["channels", "strings"], 7: ["epoch", "string"], 8: ["id", "string"], 9: ["timestamp", "varint"], 10: ["mode", "string"], 11: ["interval_ms", "varint"], 12: ["session", "string"], 13: ["recovered", "bool"], 14: ["replayed", "varint"], 15: ["reason", "string"], 16: ["subject", "string"], 17: ["expires_ms", "varint"] };
const ERROR = { 1: ["code", "string"], 2: ["msg", "string"], 3: ["id", "string"], 4: ["channels", "strings"] };
const STATUS = { 1: ["state", "string"], 2: ["reason", "string"], 3: ["channels", "strings"] };

/** A tickgate.v1.Update as the JSON push's `data` object. */
export function decodeUpdate(r) {
  const u = { seq: 0 };
  r.each((field, wire) => {
    switch (field) {
      case 1: u.symbol = r.string(); return true;
      case 2: u.seq = r.varint(); return true;
      case 5: u.tradeTime = r.varint(); return true;
      case 10: Object.assign(u, fields(sub(r), TICK), { type: "tick" }); return true;
      case 11: Object.assign(u, fields(sub(r), QUOTE), { type: "quote" }); return true;
      case 12: {
        u.type = "depth"; u.ask = []; u.bid = [];
        const depth = sub(r);
        depth.each((f) => {
          if (f !== 1 && f !== 2) return false;
          (f === 1 ? u.ask : u.bid).push(fields(sub(depth), LEVEL));
          return true;
        });
        return true;
      }
      case 13: {
        const k = fields(sub(r), KLINE);
        Object.assign(u, k, { type: "kline", klineCycle: `kline@${k.period || 1}` });
        delete u.period;
        delete u.tradeTime;
        return true;
      }
      default: return false;
    }
  });
  return u;
}

/** A tickgate.v1.ServerMessage as the equivalent JSON message. */
export function decodeServerMessage(bytes) {
  const r = new Reader(bytes);
  let out = null;
  r.each((field) => {
    switch (field) {
      case 1: out = { type: "stock_quote", data: decodeUpdate(sub(r)) }; return true;
      case 6: out = { type: "stock_quote", data: decodeUpdate(sub(r)), snapshot: true }; return true;
      case 7: out = { type: "stock_quote", data: decodeUpdate(sub(r)), snapshot: true, refresh: true }; return true;
      case 2: {
        const batch = { type: "batch", updates: [] };
        const entries = sub(r);
        entries.each((f) => {
          if (f === 1) { batch.updates.push(decodeUpdate(sub(entries))); return true; }
          return false;
        });
        out = batch;
        return true;
      }
      case 3: out = fields(sub(r), REPLY); return true;
      case 4: out = { type: "error", ...fields(sub(r), ERROR) }; return true;
      case 5: out = { type: "status", ...fields(sub(r), STATUS) }; return true;
      default: return false;
    }
  });
  return out || { type: "unknown" };
}
