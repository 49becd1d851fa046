// tickgate.js: a browser client for the tickgate gateway (docs/protocol.md). No dependencies,
// no build step: an ES module.
//
//   import { TickgateClient } from "./tickgate.js";
//   const c = new TickgateClient("ws://127.0.0.1:8080/", { token, mode: "batch", intervalMs: 500 });
//   c.addEventListener("update", (e) => console.log(e.detail));      // one normalized update
//   c.addEventListener("state", (e) => console.log(e.detail.state)); // live, reconnecting, recovered, not_recovered
//   c.connect();
//   await c.subscribe(["AAPL$US"], ["quote", "tick"]);
//
// The connection stays up by itself: it reconnects with exponential backoff and full jitter and
// resumes its session with the last seq it delivered per channel, so listeners see every update
// once, in order (duplicates of what they had are dropped). Where the gap cannot be filled, the
// state says "not_recovered" and snapshots follow. Requests made while reconnecting are sent once
// it is back. JSON by default; protocol: "proto" uses the Protobuf subprotocol (decoded by
// tickgate-proto.js, which this module loads only then).

export const STATES = ["connecting", "live", "reconnecting", "recovered", "not_recovered", "closed"];

export class ClientError extends Error {
  constructor(code, msg, channels) {
    super(`${code}: ${msg}`);
    this.code = code;
    this.channels = channels || [];
  }
}

class Disconnected extends Error {
  constructor() {
    super("disconnected");
  }
}

export class TickgateClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.token = options.token || null;
    this.protocol = options.protocol || "json";
    this.mode = options.mode || "immediate";
    this.intervalMs = options.intervalMs || null;
    this.backoffInitial = options.backoffInitial ?? 250;
    this.backoffMax = options.backoffMax ?? 10000;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.state = "connecting";
    this.session = null;
    this.epoch = null;
    this.channels = new Set(); // what the caller asked for: a reconnect restores it
    this.lastSeq = new Map();
    this._ws = null;
    this._attempt = 0;
    this._ids = 0;
    this._replies = new Map();
    this._isReady = false;
    this._waiters = []; // requests waiting for the connection: woken when ready or closed
    this._closed = false;
    this._proto = null;
  }

  // -- lifecycle -----------------------------------------------------------------------------

  async connect() {
    if (this.protocol === "proto" && !this._proto) {
      this._proto = await import("./tickgate-proto.js");
    }
    this._open();
  }

  close() {
    this._closed = true;
    this._setReady(false);
    if (this._ws) this._ws.close(1000, "client closed");
    this._setState("closed");
    this._wake();
  }

  /** Closes the socket as a network failure would (to see the reconnect and resume work). */
  drop() {
    this._setReady(false);
    if (this._ws) this._ws.close(4999, "dropped by the client");
  }

  _setReady(ready) {
    this._isReady = ready;
    if (ready) this._wake();
  }

  _wake() {
    const waiters = this._waiters;
    this._waiters = [];
    for (const resolve of waiters) resolve();
  }

  _untilReady() {
    return new Promise((resolve) => this._waiters.push(resolve));
  }

  _wsUrl() {
    const u = new URL(this.url, window.location.href);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    u.searchParams.set("mode", this.mode);
    if (this.intervalMs) u.searchParams.set("interval_ms", String(this.intervalMs));
    if (this.token) u.searchParams.set("token", this.token); // browsers cannot set headers here
    return u.toString();
  }

  _open() {
    const protocols = this.protocol === "proto" ? ["tickgate.v1.proto"] : [];
    const ws = new WebSocket(this._wsUrl(), protocols);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onmessage = (e) => this._onMessage(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e);
  }

  _onClose(ws, e) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._setReady(false);
    for (const [, pending] of this._replies) pending.reject(new Disconnected());
    this._replies.clear();
    if (this._closed) return;
    if (e.code === 4001) {
      this._closed = true;
      this._setState("closed", e.reason || "unauthenticated");
      this._wake();
      return;
    }
    this._setState("reconnecting", e.reason || `closed (${e.code})`);
    this._attempt += 1;
    const delay = Math.random() * Math.min(this.backoffMax, this.backoffInitial * 2 ** this._attempt);
    setTimeout(() => { if (!this._closed) this._open(); }, delay);
  }

  async _restore(welcome) {
    if (this.session === null) {
      this.session = welcome.session;
      this.epoch = welcome.epoch;
      this._attempt = 0;
      this._setState("live");
      this._setReady(true);
      return;
    }
    const lastSeq = {};
    for (const [channel, seq] of this.lastSeq) if (this.channels.has(channel)) lastSeq[channel] = seq;
    const oldEpoch = this.epoch || "";
    if (welcome.epoch !== this.epoch) {
      // The gateway restarted: numbering began anew. Forgotten before the snapshots that
      // follow the resume reply are checked against it.
      this.lastSeq.clear();
      this.epoch = welcome.epoch;
    }
    const reply = await this._call({ action: "resume", session: this.session, epoch: oldEpoch, last_seq: lastSeq });
    if (["unknown_session", "sessions_unavailable", "capacity"].includes(reply.reason)) {
      this.session = welcome.session; // the connection kept the session it was welcomed with
    }
    const have = new Set((await this._call({ action: "query_subscribe" })).channels || []);
    const extra = [...have].filter((c) => !this.channels.has(c));
    for (const [types, symbols] of byType(extra)) await this._call({ action: "unsubscribe", symbols, types });
    const missing = [...this.channels].filter((c) => !have.has(c));
    for (const [types, symbols] of byType(missing)) {
      try {
        await this._call({ action: "subscribe", symbols, types });
      } catch (e) {
        if (!(e instanceof ClientError)) throw e;
        // Refused now (a narrower token, the provider's limit): said, not retried forever.
        for (const s of symbols) for (const t of types) this.channels.delete(`${s}:${t}`);
        this.dispatchEvent(new CustomEvent("error", { detail: { code: e.code, msg: e.message, channels: e.channels } }));
      }
    }
    this._attempt = 0;
    this._setState(reply.recovered ? "recovered" : "not_recovered", reply.reason || "");
    this._setReady(true);
  }

  // -- requests ------------------------------------------------------------------------------

  async subscribe(symbols, types = ["quote"]) {
    const reply = await this.request({ action: "subscribe", symbols, types });
    for (const c of reply.channels || []) this.channels.add(c);
    return reply;
  }

  async unsubscribe(symbols, types) {
    const message = { action: "unsubscribe", symbols };
    if (types) message.types = types;
    const reply = await this.request(message);
    for (const c of reply.channels || []) {
      this.channels.delete(c);
      this.lastSeq.delete(c); // nothing more comes for it after the reply
    }
    return reply;
  }

  async setMode(mode, intervalMs) {
    const message = { action: "set_mode", mode };
    if (intervalMs) message.interval_ms = intervalMs;
    const reply = await this.request(message);
    this.mode = mode;
    this.intervalMs = intervalMs || null;
    return reply;
  }

  /** Sends a command once connected; sent again if the connection drops before its reply. */
  async request(message) {
    for (;;) {
      while (!this._isReady) {
        if (this._closed) throw new Error("client closed");
        await this._untilReady();
      }
      try {
        return await this._call(message);
      } catch (e) {
        if (!(e instanceof Disconnected)) throw e; // a refusal or a timeout is the caller's to see
      }
    }
  }

  _call(message) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      this._setReady(false); // closing: wait for the reconnect rather than spin
      return Promise.reject(new Disconnected());
    }
    const id = `r${++this._ids}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._replies.delete(id);
        reject(new Error("timed out"));
      }, this.requestTimeout);
      this._replies.set(id, {
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      ws.send(JSON.stringify({ ...message, id }));
    });
  }

  // -- what comes in -------------------------------------------------------------------------

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    const m = typeof data === "string" ? JSON.parse(data) : this._proto.decodeServerMessage(new Uint8Array(data));
    switch (m.type) {
      case "stock_quote":
        this._deliver(m.data, !!m.snapshot, !!m.refresh);
        break;
      case "batch":
        for (const entry of m.updates) this._deliver(entry, false, false);
        break;
      case "welcome":
        this._restore(m).catch((e) => ws.close(4998, `resume failed: ${e.message}`));
        break;
      case "status":
        this.dispatchEvent(new CustomEvent("status", { detail: m }));
        break;
      default: {
        const pending = m.id !== undefined ? this._replies.get(String(m.id)) : undefined;
        if (pending) {
          this._replies.delete(String(m.id));
          if (m.type === "error") pending.reject(new ClientError(m.code, m.msg, m.channels));
          else pending.resolve(m);
        } else if (m.type === "error") {
          if ((m.code === "not_entitled" || m.code === "upstream_rejected") && m.channels) {
            for (const c of m.channels) this.channels.delete(c);
          }
          this.dispatchEvent(new CustomEvent("error", { detail: m }));
        }
      }
    }
  }

  _deliver(data, snapshot, refresh) {
    const channel = `${data.symbol}:${data.type === "kline" ? data.klineCycle : data.type}`;
    const last = this.lastSeq.get(channel);
    // Already had it (a replay overlapping what came before the drop); a refresh may repeat
    // the last seq on purpose: it replaces what the listener holds.
    // A refresh is the channel's state from now on, whatever its seq (an ingest restart
    // numbers anew under a live connection).
    if (last !== undefined && !refresh && data.seq <= last) return;
    this.lastSeq.set(channel, data.seq);
    this.dispatchEvent(new CustomEvent("update", { detail: { ...data, channel, snapshot } }));
  }

  _setState(state, reason = "") {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, reason } }));
  }
}

function byType(channels) {
  const groups = new Map();
  for (const channel of channels) {
    const i = channel.lastIndexOf(":");
    const kind = channel.slice(i + 1);
    if (!groups.has(kind)) groups.set(kind, []);
    groups.get(kind).push(channel.slice(0, i));
  }
  return [...groups].map(([kind, symbols]) => [[kind], symbols]);
}
