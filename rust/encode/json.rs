//! The seed article's JSON push, written by hand: `{"type":"stock_quote","data":{...},"timestamp":ms}`.
//!
//! Field names follow the seed (`symbol`, `lastDealPrice`, `tradeTime`, ...) so its browser
//! clients work unchanged; tickgate adds `seq` and the derived fields. Optional fields a
//! provider did not send are left out, as the seed's `JSON.stringify` leaves out `undefined`.
//! Symbols are canonical (`[A-Z0-9._-]+$[A-Z]+`), so they need no escaping.

use std::ops::Range;

use super::wsframe::{Framed, Opcode, MAX_HEADER};
use crate::model::{Depth, DepthLevel, Kline, MarketUpdate, Payload, Quote, Tick};

pub fn encode_update(u: &MarketUpdate) -> Vec<u8> {
    write_update(JsonWriter(Vec::with_capacity(320)), u).0
}

/// The JSON push with its WebSocket text-frame header, encoded in one buffer, and where its
/// `"data"` object lies in the payload: a batch lists those objects as they are, uncopied
/// into any other encoding.
pub fn encode_update_framed(u: &MarketUpdate) -> (Framed, Range<usize>) {
    let (buf, data) = write_update(JsonWriter(Framed::buffer(320)), u);
    let data = data.start - MAX_HEADER..data.end - MAX_HEADER;
    (Framed::seal(buf, Opcode::Text), data)
}

/// The `{"type":"batch",...}` text frame around already-encoded data objects.
pub fn encode_batch_framed<'a>(
    data: impl Iterator<Item = &'a [u8]>,
    timestamp_ms: i64,
    dropped_ticks: u64,
    size_hint: usize,
) -> Vec<u8> {
    let mut w = JsonWriter(Framed::buffer(size_hint + 64));
    w.raw(r#"{"type":"batch","updates":["#);
    for (i, d) in data.enumerate() {
        if i > 0 {
            w.raw(",");
        }
        w.0.extend_from_slice(d);
    }
    w.raw(r#"],"timestamp":"#);
    w.int(timestamp_ms);
    if dropped_ticks > 0 {
        w.int_field("dropped_ticks", dropped_ticks as i64);
    }
    w.raw("}");
    let mut buf = w.0;
    let start = super::wsframe::header_before(&mut buf, MAX_HEADER, Opcode::Text);
    buf.drain(..start);
    buf
}

fn write_update(mut w: JsonWriter, u: &MarketUpdate) -> (Vec<u8>, Range<usize>) {
    w.raw(r#"{"type":"stock_quote","data":"#);
    let data_start = w.0.len();
    w.raw(r#"{"symbol":""#);
    w.raw(&u.symbol);
    w.raw("\"");
    match &u.payload {
        Payload::Quote(q) => quote(&mut w, q, u.event_time_ms),
        Payload::Tick(t) => tick(&mut w, t, u.event_time_ms),
        Payload::Depth(d) => depth(&mut w, d, u.event_time_ms),
        Payload::Kline(k) => kline(&mut w, k),
    }
    w.int_field("seq", u.seq as i64);
    w.raw("}");
    let data_end = w.0.len();
    w.raw(r#","timestamp":"#);
    w.int(u.recv_time_ms);
    w.raw("}");
    (w.0, data_start..data_end)
}

fn quote(w: &mut JsonWriter, q: &Quote, time: i64) {
    w.num_field("lastDealPrice", q.last);
    w.opt_field("openPrice", q.open);
    w.opt_field("highPrice", q.high);
    w.opt_field("lowPrice", q.low);
    w.opt_field("volume", q.volume);
    w.opt_field("turnover", q.turnover);
    w.int_field("tradeTime", time);
    w.raw(r#","type":"quote""#);
    w.opt_field("prevClose", q.prev_close);
    w.opt_field("change", q.change);
    w.opt_field("changePercent", q.change_percent);
    w.int_field("status", q.status as i64);
}

fn tick(w: &mut JsonWriter, t: &Tick, time: i64) {
    w.num_field("lastDealPrice", t.price);
    w.num_field("volume", t.volume);
    w.int_field("tradeTime", time);
    w.raw(r#","type":"tick""#);
    w.int_field("direction", t.direction as i64);
    w.int_field("session", t.session as i64);
    w.opt_field("turnover", t.turnover);
    if let Some(s) = t.status {
        w.int_field("status", s as i64);
    }
    w.num_field("cumulativeVolume", t.cumulative_volume);
    w.opt_field("change", t.change);
    w.opt_field("changePercent", t.change_percent);
}

fn depth(w: &mut JsonWriter, d: &Depth, time: i64) {
    w.raw(r#","ask":"#);
    levels(w, &d.asks);
    w.raw(r#","bid":"#);
    levels(w, &d.bids);
    w.int_field("tradeTime", time);
    w.raw(r#","type":"depth""#);
}

/// Levels keep iTick's short keys (`po`, `p`, `v`, `o`): the seed forwarded them as received.
fn levels(w: &mut JsonWriter, levels: &[DepthLevel]) {
    w.raw("[");
    for (i, lv) in levels.iter().enumerate() {
        w.raw(if i == 0 { r#"{"po":"# } else { r#",{"po":"# });
        w.int(lv.position as i64);
        w.num_field("p", lv.price);
        w.num_field("v", lv.volume);
        w.opt_field("o", lv.orders);
        w.raw("}");
    }
    w.raw("]");
}

fn kline(w: &mut JsonWriter, k: &Kline) {
    w.num_field("closePrice", k.close);
    w.num_field("highPrice", k.high);
    w.num_field("lowPrice", k.low);
    w.num_field("openPrice", k.open);
    w.opt_field("volume", k.volume);
    w.opt_field("turnover", k.turnover);
    w.int_field("time", k.open_time_ms);
    w.raw(r#","klineCycle":"kline@"#);
    w.int(k.period as i64);
    w.raw(r#"","type":"kline""#);
}

struct JsonWriter(Vec<u8>);

impl JsonWriter {
    #[inline]
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn key(&mut self, name: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    #[inline]
    fn int(&mut self, v: i64) {
        self.0.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// Integral values print without a fraction (`16742235`, as JavaScript does); others in
    /// their shortest round-trip form. Non-finite values cannot reach here (decoders reject
    /// them) but would print as `null`, never as invalid JSON.
    #[inline]
    fn num(&mut self, v: f64) {
        if !v.is_finite() {
            self.raw("null");
        } else if v.fract() == 0.0 && v.abs() < 1e15 {
            self.int(v as i64);
        } else {
            self.0
                .extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
        }
    }

    fn num_field(&mut self, name: &str, v: f64) {
        self.key(name);
        self.num(v);
    }

    fn int_field(&mut self, name: &str, v: i64) {
        self.key(name);
        self.int(v);
    }

    fn opt_field(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.num_field(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_javascript() {
        let mut w = JsonWriter(Vec::new());
        for v in [
            16742235.0,
            225.215,
            -1.055,
            0.0,
            -0.0,
            1e-7,
            3774688301.452,
            1e20,
            f64::NAN,
        ] {
            w.num(v);
            w.raw(" ");
        }
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "16742235 225.215 -1.055 0 0 1e-7 3774688301.452 1e+20 null "
        );
    }
}
