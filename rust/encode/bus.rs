//! The bus record: how encoded updates travel from the ingest process to edge processes.
//!
//! An edge must not encode again what the ingest encoded, so a record carries the update's
//! encodings themselves: the `tickgate.v1.Update` Protobuf bytes (which also describe the
//! update fully, so the edge rebuilds the model from them for conflation and Python readers)
//! and the seed JSON push with the span of its `"data"` object (what JSON batches list). The
//! edge copies both into place; it never runs an encoder. zstd is not carried: it is made per
//! edge, once per update, by the edge's own compressor (its dictionary is the edge's setting).
//!
//! Layout, little-endian, per update: `u32 len, Update bytes, u32 len, JSON payload,
//! u32 data_start, u32 data_end`. Records concatenate: the ingest packs each update once and
//! joins, for each edge, the records of the updates it holds receivers of. The layout's
//! version is agreed when an edge joins the bus (`tickgate.bus.local`), not per record. A
//! later broker between nodes can carry the same bytes.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use super::protobuf::{pb, ProtoEncoded};
use super::wsframe::{Framed, Opcode};
use super::EncodedUpdate;
use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::{
    channel_name, Depth, DepthLevel, Direction, Kind, Kline, MarketUpdate, Payload, Quote, Session, Tick,
    TradingStatus,
};

/// Version of the record layout, checked when an edge joins the bus.
pub const VERSION: u32 = 1;

/// Packs `updates` (encoding JSON and Protobuf if they were not yet) into one record.
pub fn pack<'a>(updates: impl IntoIterator<Item = &'a EncodedUpdate>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    for u in updates {
        let proto = u.proto().update();
        let json = u.json_payload();
        let data = u.json_data_range();
        put(&mut out, proto);
        put(&mut out, json);
        out.extend_from_slice(&(data.start as u32).to_le_bytes());
        out.extend_from_slice(&(data.end as u32).to_le_bytes());
    }
    out
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a record back into updates whose encodings are already in place.
pub fn unpack(record: &[u8]) -> CoreResult<Vec<EncodedUpdate>> {
    let mut r = Reader { buf: record, at: 0 };
    let mut names = Names::default();
    let mut out = Vec::new();
    while r.at < record.len() {
        let proto = r.chunk()?;
        let json = r.chunk()?;
        let start = r.u32()? as usize;
        let end = r.u32()? as usize;
        if start > end || end > json.len() {
            return Err(bad("JSON data span outside the payload"));
        }
        let message = pb::Update::decode(proto).map_err(|e| bad(&format!("Update does not decode: {e}")))?;
        let update = from_message(message, &mut names)?;
        let mut buf = Framed::buffer(json.len());
        buf.extend_from_slice(json);
        out.push(EncodedUpdate::with_encodings(
            update,
            (Framed::seal(buf, Opcode::Text), start..end),
            ProtoEncoded::from_update_bytes(proto),
        ));
    }
    Ok(out)
}

fn bad(msg: &str) -> CoreError {
    CoreError::new(ErrorCode::InvalidFrame, format!("bus record: {msg}"))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| bad("truncated"))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn chunk(&mut self) -> CoreResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Shares one allocation per distinct name within a record (a record often holds many
/// updates of one symbol, and always one epoch and provider).
#[derive(Default)]
struct Names(HashMap<String, Arc<str>>);

impl Names {
    fn get(&mut self, name: String) -> Arc<str> {
        if let Some(shared) = self.0.get(&name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name.as_str());
        self.0.insert(name, shared.clone());
        shared
    }
}

fn from_message(m: pb::Update, names: &mut Names) -> CoreResult<MarketUpdate> {
    use pb::update::Data;
    let payload = match m.data.ok_or_else(|| bad("Update without data"))? {
        Data::Tick(t) => Payload::Tick(Tick {
            price: t.price,
            volume: t.volume,
            direction: match t.direction {
                1 => Direction::Sell,
                2 => Direction::Buy,
                _ => Direction::Neutral,
            },
            session: match t.session {
                1 => Session::PreMarket,
                2 => Session::AfterHours,
                _ => Session::Regular,
            },
            turnover: t.turnover,
            status: t.status.map(status),
            cumulative_volume: t.cumulative_volume,
            change: t.change,
            change_percent: t.change_percent,
        }),
        Data::Quote(q) => Payload::Quote(Quote {
            last: q.last,
            open: q.open,
            high: q.high,
            low: q.low,
            prev_close: q.prev_close,
            change: q.change,
            change_percent: q.change_percent,
            volume: q.volume,
            turnover: q.turnover,
            status: status(q.status),
        }),
        Data::Depth(d) => Payload::Depth(Depth {
            asks: levels(d.asks),
            bids: levels(d.bids),
        }),
        Data::Kline(k) => {
            let Kind::Kline(period) = Kind::from_period(k.period as i64)? else {
                unreachable!("from_period returns a kline")
            };
            Payload::Kline(Kline {
                period,
                open_time_ms: k.open_time_ms,
                open: k.open,
                high: k.high,
                low: k.low,
                close: k.close,
                volume: k.volume,
                turnover: k.turnover,
            })
        }
    };
    let channel = channel_name(&m.symbol, payload.kind());
    Ok(MarketUpdate {
        symbol: names.get(m.symbol),
        channel: names.get(channel),
        seq: m.seq,
        epoch: names.get(m.epoch),
        provider: names.get(m.provider),
        event_time_ms: m.event_time_ms,
        recv_time_ms: m.recv_time_ms,
        payload,
    })
}

fn status(code: i32) -> TradingStatus {
    TradingStatus::from_code(code as i64).unwrap_or_default()
}

fn levels(levels: Vec<pb::DepthLevel>) -> Vec<DepthLevel> {
    levels
        .into_iter()
        .map(|l| DepthLevel {
            position: l.position,
            price: l.price,
            volume: l.volume,
            orders: l.orders,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Compressor;
    use crate::providers::Provider;
    use crate::state::{Event, FeedProcessor, ProcessorConfig};

    fn updates() -> Vec<EncodedUpdate> {
        let mut p = FeedProcessor::new(ProcessorConfig::new(Provider::Itick));
        let frames = [
            r#"{"code":1,"data":{"s":"AAPL.US","ld":225.5,"o":224,"h":226,"l":223,"p":220,"v":1000,"tu":225500,"ts":0,"t":1731689407000,"type":"quote"}}"#,
            r#"{"code":1,"data":{"s":"700.HK","ld":380.2,"v":300,"te":1,"t":1731689407001,"type":"tick"}}"#,
            r#"{"code":1,"data":{"s":"AAPL.US","a":[{"po":1,"p":225.6,"v":100,"o":3}],"b":[{"po":1,"p":225.4,"v":50}],"t":1731689407002,"type":"depth"}}"#,
            r#"{"code":1,"data":{"s":"AAPL.US","o":1,"h":2,"l":0.5,"c":1.5,"v":10,"tu":15,"t":1731689400000,"type":"kline@1"}}"#,
        ];
        let mut events = Vec::new();
        for f in frames {
            p.process(f.as_bytes(), 1_731_689_407_010, &mut events).unwrap();
        }
        let mut out = Vec::new();
        for e in events {
            if let Event::Update(u) = e {
                out.push(EncodedUpdate::new(u));
            }
        }
        assert_eq!(out.len(), 4, "fixture frames must all decode");
        out
    }

    #[test]
    fn round_trip_keeps_the_model_and_every_encoding() {
        let ups = updates();
        let record = pack(&ups);
        let back = unpack(&record).unwrap();
        assert_eq!(back.len(), ups.len());
        let mut c1 = Compressor::new(None).unwrap();
        let mut c2 = Compressor::new(None).unwrap();
        for (a, b) in ups.iter().zip(&back) {
            assert_eq!(a.update, b.update);
            assert_eq!(a.json_frame(), b.json_frame());
            assert_eq!(a.json_data(), b.json_data());
            assert_eq!(a.proto().frame(), b.proto().frame());
            assert_eq!(a.proto().message(), b.proto().message());
            assert_eq!(a.zstd_frame(&mut c1), b.zstd_frame(&mut c2));
        }
        assert!(unpack(&pack(&[])).unwrap().is_empty());
        // Records concatenate.
        let mut joined = pack(&ups[..1]);
        joined.extend_from_slice(&pack(&ups[1..]));
        assert_eq!(joined, record);
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let ups = updates();
        let record = pack(&ups[..1]);
        for cut in 1..record.len() {
            assert!(unpack(&record[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(unpack(&longer).is_err());
        let mut huge = record.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(unpack(&huge), Err(e) if e.code == ErrorCode::InvalidFrame));
        // Flipping any byte never panics (it may still decode).
        let record = pack(&ups);
        for i in 0..record.len() {
            let mut flipped = record.clone();
            flipped[i] ^= 0xff;
            let _ = unpack(&flipped);
        }
    }
}
