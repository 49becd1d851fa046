//! iTick WebSocket frames (see docs/providers.md): greeting, auth, subscribe and pong replies,
//! and market pushes for tick, quote, depth and both kline forms.
//!
//! One parsing pass reads every field any frame may carry into `Frame`; classification then
//! looks at which fields are present. The pass is a hand-written scanner (`scan`) for the
//! frames iTick actually sends, and `serde_json` for anything the scanner declines, so odd
//! input keeps serde's exact errors. Symbols are canonicalized into a caller-owned buffer so
//! a steady stream of known symbols decodes without allocating.

use std::borrow::Cow;

use serde::Deserialize;

use super::fields::{epoch_ms, optional, required, small_code, Num, Text};
use super::{Control, ControlKind, Observation};
use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::symbol::{canonicalize_into, canonicalize_parts};
use crate::model::{Depth, DepthLevel, Direction, Kind, Kline, Payload, Quote, Session, Tick, TradingStatus};

/// Everything a frame may carry. `L` is how a depth side arrives: serde collects raw
/// `Level`s; the scanner converts levels as it reads them (`scan::Side`).
#[derive(Deserialize, Default)]
struct Frame<'a, L = Vec<Level>> {
    #[serde(default)]
    code: Option<Num>,
    #[serde(rename = "resAc", borrow, default)]
    res_ac: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    msg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Data<'a, L>>,
}

#[derive(Deserialize, Default)]
struct Data<'a, L = Vec<Level>> {
    #[serde(borrow, default)]
    s: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    r: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    ld: Option<Num>,
    #[serde(default)]
    o: Option<Num>,
    #[serde(default)]
    h: Option<Num>,
    #[serde(default)]
    l: Option<Num>,
    #[serde(default)]
    c: Option<Num>,
    #[serde(default)]
    p: Option<Num>,
    #[serde(default)]
    ch: Option<Num>,
    #[serde(default)]
    chp: Option<Num>,
    #[serde(default)]
    v: Option<Num>,
    #[serde(default)]
    tu: Option<Num>,
    /// Event time in ms; in the nested kline form, the period code instead.
    #[serde(default)]
    t: Option<Num>,
    #[serde(default)]
    ts: Option<Num>,
    #[serde(default)]
    d: Option<Num>,
    #[serde(default)]
    te: Option<Num>,
    #[serde(default)]
    a: Option<L>,
    #[serde(default)]
    b: Option<L>,
    #[serde(default)]
    k: Option<Bar>,
    #[serde(borrow, default)]
    params: Option<Text<'a>>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct Level {
    #[serde(default)]
    po: Option<Num>,
    #[serde(default)]
    p: Option<Num>,
    #[serde(default)]
    v: Option<Num>,
    #[serde(default)]
    o: Option<Num>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct Bar {
    #[serde(default)]
    o: Option<Num>,
    #[serde(default)]
    h: Option<Num>,
    #[serde(default)]
    l: Option<Num>,
    #[serde(default)]
    c: Option<Num>,
    #[serde(default)]
    v: Option<Num>,
    #[serde(default)]
    tu: Option<Num>,
    #[serde(default)]
    t: Option<Num>,
}

/// What one iTick frame decodes to. For `Market`, the canonical symbol is in `symbol_out`.
#[derive(Debug, Clone, PartialEq)]
pub enum ItickFrame {
    Control(Control),
    Market(Observation),
}

pub fn decode(frame: &[u8], symbol_out: &mut String) -> CoreResult<ItickFrame> {
    let mut parsed = Frame::default();
    match scan::frame(frame, &mut parsed) {
        Some(()) => classify(&mut parsed, symbol_out),
        None => decode_serde(frame, symbol_out),
    }
}

/// The reference decoder: also the fallback for every frame the scanner declines.
fn decode_serde(frame: &[u8], symbol_out: &mut String) -> CoreResult<ItickFrame> {
    let mut parsed: Frame = serde_json::from_slice(frame).map_err(json_error)?;
    classify(&mut parsed, symbol_out)
}

/// Works in place (taking what it keeps) because `Frame` is large enough that moves show.
fn classify<L: DepthSide>(parsed: &mut Frame<'_, L>, symbol_out: &mut String) -> CoreResult<ItickFrame> {
    let ok = parsed.code.is_some_and(|c| c.0 == 1.0);
    let message = parsed.msg.as_deref().unwrap_or("").to_owned();

    if let Some(action) = parsed.res_ac.as_deref() {
        let params = parsed
            .data
            .as_mut()
            .and_then(|d| d.params.take())
            .map(|t| t.0.into_owned());
        let kind = match action.to_ascii_lowercase().as_str() {
            "auth" => ControlKind::Auth,
            "subscribe" => ControlKind::Subscribe,
            "unsubscribe" => ControlKind::Unsubscribe,
            // A pong carries no code: receiving it at all is the success.
            "pong" => {
                return Ok(ItickFrame::Control(Control {
                    kind: ControlKind::Pong,
                    ok: true,
                    message,
                    params,
                    action: action.to_owned(),
                }))
            }
            _ => ControlKind::Notice,
        };
        return Ok(ItickFrame::Control(Control {
            kind,
            ok,
            message,
            params,
            action: action.to_owned(),
        }));
    }

    match &mut parsed.data {
        Some(data) if data.k.is_some() || data.kind.is_some() => {
            market(data, symbol_out).map(ItickFrame::Market)
        }
        Some(_) => Err(CoreError::new(
            ErrorCode::InvalidFrame,
            "market data without \"type\"",
        )),
        None if parsed.code.is_none() && parsed.msg.is_none() => Err(CoreError::new(
            ErrorCode::InvalidFrame,
            "frame has none of code, msg, resAc, data",
        )),
        None => {
            // The greeting is the only data-less, action-less success frame iTick sends.
            let kind = if ok {
                ControlKind::Connected
            } else {
                ControlKind::Notice
            };
            Ok(ItickFrame::Control(Control {
                kind,
                ok,
                message,
                params: None,
                action: String::new(),
            }))
        }
    }
}

fn market<L: DepthSide>(data: &mut Data<'_, L>, symbol_out: &mut String) -> CoreResult<Observation> {
    let Some(s) = data.s.as_deref() else {
        return Err(CoreError::new(
            ErrorCode::InvalidField,
            "market data without field \"s\"",
        ));
    };
    match data.r.as_deref() {
        Some(r) if !s.contains(['$', '.']) => canonicalize_parts(s, r, symbol_out)?,
        _ => canonicalize_into(s, symbol_out)?,
    }

    if let Some(bar) = data.k {
        // Nested form: the outer `t` is the period code, the bar (with its own `t`) is in `k`.
        let period = small_code(data.t).unwrap_or(-1);
        let Kind::Kline(period) = Kind::from_period(period)? else {
            unreachable!()
        };
        return kline(period, bar.o, bar.h, bar.l, bar.c, bar.v, bar.tu, bar.t);
    }

    let kind = Kind::parse(data.kind.as_deref().unwrap_or_default())?;
    match kind {
        Kind::Kline(period) => kline(period, data.o, data.h, data.l, data.c, data.v, data.tu, data.t),
        Kind::Quote => Ok(Observation {
            event_time_ms: epoch_ms(data.t, "t")?,
            payload: Payload::Quote(Quote {
                last: required(data.ld, "quote", "ld")?,
                open: optional(data.o, "o")?,
                high: optional(data.h, "h")?,
                low: optional(data.l, "l")?,
                prev_close: optional(data.p, "p")?.filter(|p| *p != 0.0),
                change: optional(data.ch, "ch")?,
                change_percent: optional(data.chp, "chp")?,
                volume: optional(data.v, "v")?,
                turnover: optional(data.tu, "tu")?,
                status: status(data.ts).unwrap_or_default(),
            }),
        }),
        Kind::Tick => Ok(Observation {
            event_time_ms: epoch_ms(data.t, "t")?,
            payload: Payload::Tick(Tick {
                price: required(data.ld, "tick", "ld")?,
                volume: optional(data.v, "v")?.unwrap_or(0.0),
                direction: match small_code(data.d) {
                    Some(1) => Direction::Sell,
                    Some(2) => Direction::Buy,
                    _ => Direction::Neutral,
                },
                session: match small_code(data.te) {
                    Some(1) => Session::PreMarket,
                    Some(2) => Session::AfterHours,
                    _ => Session::Regular,
                },
                turnover: optional(data.tu, "tu")?,
                status: status(data.ts),
                cumulative_volume: 0.0,
                change: None,
                change_percent: None,
            }),
        }),
        Kind::Depth => {
            if data.a.is_none() && data.b.is_none() {
                return Err(CoreError::new(
                    ErrorCode::InvalidField,
                    "depth without \"a\" or \"b\"",
                ));
            }
            Ok(Observation {
                event_time_ms: epoch_ms(data.t, "t")?,
                payload: Payload::Depth(Depth {
                    asks: data.a.take().map_or(Ok(Vec::new()), |a| a.into_levels("a"))?,
                    bids: data.b.take().map_or(Ok(Vec::new()), |b| b.into_levels("b"))?,
                }),
            })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn kline(
    period: u8,
    o: Option<Num>,
    h: Option<Num>,
    l: Option<Num>,
    c: Option<Num>,
    v: Option<Num>,
    tu: Option<Num>,
    t: Option<Num>,
) -> CoreResult<Observation> {
    let Some(open_time_ms) = epoch_ms(t, "t")? else {
        return Err(CoreError::new(
            ErrorCode::InvalidField,
            "kline without bar time \"t\"",
        ));
    };
    Ok(Observation {
        event_time_ms: Some(open_time_ms),
        payload: Payload::Kline(Kline {
            period,
            open_time_ms,
            open: required(o, "kline", "o")?,
            high: required(h, "kline", "h")?,
            low: required(l, "kline", "l")?,
            close: required(c, "kline", "c")?,
            volume: optional(v, "v")?,
            turnover: optional(tu, "tu")?,
        }),
    })
}

/// Bounds a depth side: real books send 5-20 levels; a provider sending thousands is broken.
const MAX_DEPTH_LEVELS: usize = 400;

/// A depth side as one parser delivers it, turned into levels only if the frame is depth.
trait DepthSide {
    fn into_levels(self, side: &str) -> CoreResult<Vec<DepthLevel>>;
}

impl DepthSide for Vec<Level> {
    fn into_levels(self, side: &str) -> CoreResult<Vec<DepthLevel>> {
        if self.len() > MAX_DEPTH_LEVELS {
            return Err(too_many_levels(side));
        }
        self.iter().enumerate().map(|(i, lv)| level(i, lv)).collect()
    }
}

fn too_many_levels(side: &str) -> CoreError {
    CoreError::new(
        ErrorCode::InvalidField,
        format!("depth side {side:?} has over {MAX_DEPTH_LEVELS} levels"),
    )
}

/// The `i`th (0-based) level of a side.
fn level(i: usize, lv: &Level) -> CoreResult<DepthLevel> {
    Ok(DepthLevel {
        position: small_code(lv.po)
            .filter(|p| (0..=u32::MAX as i64).contains(p))
            .unwrap_or(i as i64 + 1) as u32,
        price: required(lv.p, "depth level", "p")?,
        volume: optional(lv.v, "v")?.unwrap_or(0.0),
        orders: optional(lv.o, "o")?,
    })
}

fn status(v: Option<Num>) -> Option<TradingStatus> {
    small_code(v).and_then(TradingStatus::from_code)
}

fn json_error(e: serde_json::Error) -> CoreError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            CoreError::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
        }
        Category::Data => CoreError::new(ErrorCode::InvalidFrame, format!("unexpected frame shape: {e}")),
    }
}

#[path = "itick_scan.rs"]
mod scan;

#[cfg(test)]
#[path = "itick_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "itick_scan_tests.rs"]
mod scan_tests;
