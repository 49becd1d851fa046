//! The Alpaca-style protocol (a backup provider: trades, top-of-book quotes, minute bars).
//!
//! Every server frame is a JSON array of messages, data possibly batched:
//! `{"T":"t","S":"AAPL","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z",...}` (trade -> tick),
//! `{"T":"q","S":"AMD","bp":87.66,"bs":1,"ap":87.68,"as":4,"t":"..."}` (quote -> one level of
//! depth: Alpaca's quote is the book's top, not a last price), `{"T":"b","S":"SPY","o":..,"h":..,
//! "l":..,"c":..,"v":..,"t":"2021-02-22T19:15:00Z"}` (minute bar -> `kline@1`). Controls:
//! `{"T":"success","msg":"connected"|"authenticated"}`, `{"T":"subscription",...}`,
//! `{"T":"error","code":N,"msg":"..."}`. Times are RFC 3339, up to nanoseconds. Symbols are US
//! listings (`AAPL` -> `AAPL$US`).

use serde::Deserialize;

use super::{Control, ControlKind, Observation};
use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::symbol::canonicalize_parts;
use crate::model::{Depth, DepthLevel, Kline, Payload, Tick};

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "T")]
    kind: String,
    #[serde(rename = "S")]
    symbol: Option<String>,
    t: Option<String>,
    p: Option<f64>,
    s: Option<f64>,
    bp: Option<f64>,
    bs: Option<f64>,
    ap: Option<f64>,
    #[serde(rename = "as")]
    ask_size: Option<f64>,
    o: Option<f64>,
    h: Option<f64>,
    l: Option<f64>,
    /// A bar's close; a trade's or quote's conditions (a list), ignored.
    c: Option<serde_json::Value>,
    v: Option<f64>,
    code: Option<i64>,
    msg: Option<String>,
}

/// What one Alpaca frame holds.
pub enum AlpacaFrame {
    Control(Control),
    Data(Vec<(String, Observation)>),
}

fn field(value: Option<f64>, kind: &str, name: &str) -> CoreResult<f64> {
    value.ok_or_else(|| {
        CoreError::new(
            ErrorCode::InvalidField,
            format!("an Alpaca {kind} needs {name:?}"),
        )
    })
}

/// Epoch milliseconds of an RFC 3339 time (`2021-02-22T15:51:44.208Z`, up to nanoseconds,
/// `Z` or `±HH:MM`).
pub fn rfc3339_ms(text: &str) -> CoreResult<i64> {
    let bad = || CoreError::new(ErrorCode::InvalidField, format!("not an RFC 3339 time: {text:?}"));
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> CoreResult<i64> {
        let part = b.get(from..from + len).ok_or_else(bad)?;
        part.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit()
                .then(|| acc * 10 + i64::from(d - b'0'))
                .ok_or_else(bad)
        })
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() {
            return Err(bad());
        }
        let three: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = three.parse().map_err(|_| bad())?;
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let minutes = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return Err(bad()),
    };
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_min * 60;
    Ok(seconds * 1000 + millis)
}

fn observation(m: Message) -> CoreResult<(String, Observation)> {
    let raw = m
        .symbol
        .as_deref()
        .ok_or_else(|| CoreError::new(ErrorCode::InvalidField, "an Alpaca data message needs \"S\""))?;
    let mut symbol = String::with_capacity(raw.len() + 3);
    canonicalize_parts(raw, "US", &mut symbol)?;
    let time_ms = m.t.as_deref().map(rfc3339_ms).transpose()?;
    let payload = match m.kind.as_str() {
        "t" => Payload::Tick(Tick {
            price: field(m.p, "trade", "p")?,
            volume: m.s.unwrap_or(0.0),
            direction: Default::default(),
            session: Default::default(),
            turnover: None,
            status: None,
            cumulative_volume: 0.0,
            change: None,
            change_percent: None,
        }),
        "q" => {
            let level = |price: f64, volume: f64| DepthLevel {
                position: 1,
                price,
                volume,
                orders: None,
            };
            Payload::Depth(Depth {
                asks: vec![level(field(m.ap, "quote", "ap")?, m.ask_size.unwrap_or(0.0))],
                bids: vec![level(field(m.bp, "quote", "bp")?, m.bs.unwrap_or(0.0))],
            })
        }
        _ => Payload::Kline(Kline {
            period: 1,
            open_time_ms: time_ms.unwrap_or(0),
            open: field(m.o, "bar", "o")?,
            high: field(m.h, "bar", "h")?,
            low: field(m.l, "bar", "l")?,
            close: field(m.c.as_ref().and_then(serde_json::Value::as_f64), "bar", "c")?,
            volume: m.v,
            turnover: None,
        }),
    };
    Ok((
        symbol,
        Observation {
            event_time_ms: time_ms,
            payload,
        },
    ))
}

fn control(m: Message) -> Control {
    let message = m.msg.unwrap_or_default();
    let (kind, ok) = match (m.kind.as_str(), m.code) {
        ("success", _) if message == "authenticated" => (ControlKind::Auth, true),
        ("success", _) => (ControlKind::Connected, true),
        ("subscription", _) => (ControlKind::Subscribe, true),
        // 401 not authenticated, 402 auth failed, 404 auth timeout.
        ("error", Some(401 | 402 | 404)) => (ControlKind::Auth, false),
        // 405 symbol limit, 409 insufficient subscription.
        ("error", Some(405 | 409)) => (ControlKind::Subscribe, false),
        _ => (ControlKind::Notice, false),
    };
    Control {
        kind,
        ok,
        message,
        params: None,
        action: String::new(),
    }
}

pub fn decode(frame: &[u8]) -> CoreResult<AlpacaFrame> {
    let text = std::str::from_utf8(frame)
        .map_err(|_| CoreError::new(ErrorCode::InvalidJson, "frame is not UTF-8"))?;
    let messages: Vec<Message> = serde_json::from_str(text)
        .map_err(|e| CoreError::new(ErrorCode::InvalidJson, format!("not an Alpaca frame: {e}")))?;
    let mut data = Vec::new();
    let mut first_control = None;
    for m in messages {
        match m.kind.as_str() {
            "t" | "q" | "b" => data.push(observation(m)?),
            _ if first_control.is_none() => first_control = Some(control(m)),
            _ => {}
        }
    }
    match (data.is_empty(), first_control) {
        (false, _) => Ok(AlpacaFrame::Data(data)),
        (true, Some(c)) => Ok(AlpacaFrame::Control(c)),
        (true, None) => Err(CoreError::new(ErrorCode::InvalidFrame, "an empty Alpaca frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(rfc3339_ms("2021-02-22T15:51:44.208Z").unwrap(), 1_614_009_104_208);
        assert_eq!(
            rfc3339_ms("2021-02-22T15:51:45.335689322Z").unwrap(),
            1_614_009_105_335
        );
        assert_eq!(
            rfc3339_ms("2021-02-22T10:51:44.2-05:00").unwrap(),
            1_614_009_104_200
        );
        assert_eq!(rfc3339_ms("2024-02-29T00:00:00Z").unwrap(), 1_709_164_800_000);
        for bad in [
            "",
            "2021-02-22",
            "2021-13-01T00:00:00Z",
            "2021-02-22T15:51:44.Z",
            "2021-02-22T15:51:44",
        ] {
            assert_eq!(
                rfc3339_ms(bad).unwrap_err().code,
                ErrorCode::InvalidField,
                "{bad}"
            );
        }
    }

    #[test]
    fn trades_quotes_and_bars_in_one_frame() {
        let frame = br#"[{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},{"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"},{"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z"}]"#;
        let AlpacaFrame::Data(items) = decode(frame).unwrap() else {
            panic!("not data")
        };
        let kinds: Vec<(&str, crate::model::Kind)> = items
            .iter()
            .map(|(s, o)| (s.as_str(), o.payload.kind()))
            .collect();
        use crate::model::Kind;
        assert_eq!(
            kinds,
            vec![
                ("AAPL$US", Kind::Tick),
                ("AMD$US", Kind::Depth),
                ("SPY$US", Kind::Kline(1))
            ]
        );
        match &items[1].1.payload {
            Payload::Depth(d) => assert_eq!(
                (d.bids[0].price, d.asks[0].price, d.asks[0].volume),
                (87.66, 87.68, 4.0)
            ),
            _ => panic!(),
        }
        assert_eq!(items[2].1.event_time_ms, Some(1_614_021_300_000));
    }

    #[test]
    fn controls_and_errors() {
        let c = |f: &[u8]| match decode(f).unwrap() {
            AlpacaFrame::Control(c) => (c.kind, c.ok),
            AlpacaFrame::Data(_) => panic!("data"),
        };
        assert_eq!(
            c(br#"[{"T":"success","msg":"connected"}]"#),
            (ControlKind::Connected, true)
        );
        assert_eq!(
            c(br#"[{"T":"success","msg":"authenticated"}]"#),
            (ControlKind::Auth, true)
        );
        assert_eq!(
            c(br#"[{"T":"error","code":402,"msg":"auth failed"}]"#),
            (ControlKind::Auth, false)
        );
        assert_eq!(
            c(br#"[{"T":"error","code":405,"msg":"symbol limit exceeded"}]"#),
            (ControlKind::Subscribe, false)
        );
        assert_eq!(
            c(br#"[{"T":"subscription","trades":["AAPL"],"quotes":[],"bars":[]}]"#),
            (ControlKind::Subscribe, true)
        );
        assert_eq!(decode(b"{}").err().unwrap().code, ErrorCode::InvalidJson);
        assert_eq!(decode(b"[]").err().unwrap().code, ErrorCode::InvalidFrame);
        assert_eq!(
            decode(br#"[{"T":"t","S":"AAPL","t":"2021-02-22T15:51:44Z"}]"#)
                .err()
                .unwrap()
                .code,
            ErrorCode::InvalidField
        );
    }
}
