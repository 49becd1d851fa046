//! The Finnhub-style protocol (a backup provider: trades only).
//!
//! Server frames are JSON objects: `{"type":"trade","data":[{"s":"AAPL","p":122.1,
//! "t":1672348887195,"v":1,"c":["1","8"]},...]}` (trades batched, `t` epoch ms), a heartbeat
//! `{"type":"ping"}`, and errors `{"type":"error","msg":"..."}`. Subscriptions are one symbol
//! per message and get no reply.
//!
//! Symbols: a bare code is a US listing (`AAPL` -> `AAPL$US`); `CODE.REGION` is read as such;
//! an exchange-prefixed one (`BINANCE:BTCUSDT`) keeps its code under the prefix's region when
//! known. Anything else is refused with `invalid_symbol`.

use serde::Deserialize;

use super::{Control, ControlKind, Observation};
use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::symbol::canonicalize_parts;
use crate::model::{Payload, Tick};

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(default)]
    data: Vec<Trade>,
    #[serde(default)]
    msg: Option<String>,
}

#[derive(Deserialize)]
struct Trade {
    s: Option<String>,
    p: Option<f64>,
    t: Option<i64>,
    v: Option<f64>,
}

/// What one Finnhub frame holds.
pub enum FinnhubFrame {
    Control(Control),
    /// Trades with their canonical symbols, in the provider's order.
    Trades(Vec<(String, Observation)>),
}

/// The canonical form of a Finnhub symbol.
pub fn canonical_symbol(raw: &str, out: &mut String) -> CoreResult<()> {
    let raw = raw.trim();
    if let Some((exchange, code)) = raw.split_once(':') {
        let region = match exchange.to_ascii_uppercase().as_str() {
            "BINANCE" => "BA",
            "OANDA" | "FXCM" | "FOREX" => "GB",
            _ => {
                return Err(CoreError::new(
                    ErrorCode::InvalidSymbol,
                    format!("no region known for exchange {exchange:?} in {raw:?}"),
                ))
            }
        };
        return canonicalize_parts(&code.replace('_', ""), region, out);
    }
    match raw.rsplit_once('.') {
        Some((code, region)) if !region.is_empty() && !code.is_empty() => {
            canonicalize_parts(code, region, out)
        }
        _ => canonicalize_parts(raw, "US", out),
    }
}

pub fn decode(frame: &[u8]) -> CoreResult<FinnhubFrame> {
    let text = std::str::from_utf8(frame)
        .map_err(|_| CoreError::new(ErrorCode::InvalidJson, "frame is not UTF-8"))?;
    let parsed: Frame = serde_json::from_str(text)
        .map_err(|e| CoreError::new(ErrorCode::InvalidJson, format!("not a Finnhub frame: {e}")))?;
    let control = |kind: ControlKind, ok: bool, message: String| {
        Ok(FinnhubFrame::Control(Control {
            kind,
            ok,
            message,
            params: None,
            action: String::new(),
        }))
    };
    match parsed.kind {
        Some("trade") => {
            let mut out = Vec::with_capacity(parsed.data.len());
            for trade in parsed.data {
                let (Some(symbol), Some(price)) = (trade.s, trade.p) else {
                    return Err(CoreError::new(
                        ErrorCode::InvalidField,
                        "a Finnhub trade needs \"s\" and \"p\"",
                    ));
                };
                let mut canonical = String::with_capacity(symbol.len() + 3);
                canonical_symbol(&symbol, &mut canonical)?;
                out.push((
                    canonical,
                    Observation {
                        event_time_ms: trade.t,
                        payload: Payload::Tick(Tick {
                            price,
                            volume: trade.v.unwrap_or(0.0),
                            direction: Default::default(),
                            session: Default::default(),
                            turnover: None,
                            status: None,
                            cumulative_volume: 0.0,
                            change: None,
                            change_percent: None,
                        }),
                    },
                ));
            }
            Ok(FinnhubFrame::Trades(out))
        }
        Some("ping") => control(ControlKind::Pong, true, "ping".into()),
        Some("error") => control(ControlKind::Notice, false, parsed.msg.unwrap_or_default()),
        other => Err(CoreError::new(
            ErrorCode::InvalidFrame,
            format!("unknown Finnhub frame type {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_come_batched_with_canonical_symbols() {
        let frame = br#"{"type":"trade","data":[{"s":"TSLA","p":122.1,"t":1672348887195,"v":1,"c":["1","8"]},{"s":"700.HK","p":380.2,"t":1672348887200,"v":100},{"s":"BINANCE:BTCUSDT","p":16800.5,"t":1672348887300,"v":0.01}]}"#;
        let FinnhubFrame::Trades(trades) = decode(frame).unwrap() else {
            panic!("not trades")
        };
        let got: Vec<(&str, f64, Option<i64>)> = trades
            .iter()
            .map(|(s, o)| match &o.payload {
                Payload::Tick(t) => (s.as_str(), t.price, o.event_time_ms),
                _ => panic!("not a tick"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("TSLA$US", 122.1, Some(1672348887195)),
                ("700$HK", 380.2, Some(1672348887200)),
                ("BTCUSDT$BA", 16800.5, Some(1672348887300)),
            ]
        );
    }

    #[test]
    fn heartbeats_errors_and_garbage() {
        let FinnhubFrame::Control(c) = decode(br#"{"type":"ping"}"#).unwrap() else {
            panic!()
        };
        assert_eq!((c.kind, c.ok), (ControlKind::Pong, true));
        let FinnhubFrame::Control(e) = decode(br#"{"type":"error","msg":"Invalid symbol"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.kind, e.ok, e.message.as_str()),
            (ControlKind::Notice, false, "Invalid symbol")
        );
        assert_eq!(decode(b"{nope").err().unwrap().code, ErrorCode::InvalidJson);
        assert_eq!(
            decode(br#"{"type":"news"}"#).err().unwrap().code,
            ErrorCode::InvalidFrame
        );
        let no_price = br#"{"type":"trade","data":[{"s":"TSLA","t":1}]}"#;
        assert_eq!(decode(no_price).err().unwrap().code, ErrorCode::InvalidField);
        let bad_exchange = br#"{"type":"trade","data":[{"s":"NOWHERE:X","p":1}]}"#;
        assert_eq!(decode(bad_exchange).err().unwrap().code, ErrorCode::InvalidSymbol);
    }
}
