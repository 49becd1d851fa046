//! The normalized model every provider's data is turned into.
//!
//! Prices, volumes and turnover are `f64`: providers send JSON decimal text, which parses to
//! the nearest double and prints back (shortest round-trip form) as the same text, so nothing
//! is lost passing through. Scaled integers would need a per-instrument scale the gateway does
//! not know (crypto and forex quote 5-8 decimals, equities 2-3). Derived values are rounded
//! (see `state::derive`) so float noise never reaches clients.

use std::sync::Arc;

use super::kind::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TradingStatus {
    #[default]
    Normal = 0,
    Suspended = 1,
    Delisted = 2,
    CircuitBreaker = 3,
}

impl TradingStatus {
    pub fn from_code(code: i64) -> Option<TradingStatus> {
        Some(match code {
            0 => TradingStatus::Normal,
            1 => TradingStatus::Suspended,
            2 => TradingStatus::Delisted,
            3 => TradingStatus::CircuitBreaker,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Neutral = 0,
    Sell = 1,
    Buy = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Session {
    #[default]
    Regular = 0,
    PreMarket = 1,
    AfterHours = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub price: f64,
    pub volume: f64,
    pub direction: Direction,
    pub session: Session,
    pub turnover: Option<f64>,
    pub status: Option<TradingStatus>,
    /// Derived: sum of tick volumes for the symbol's trading day so far, this tick included.
    pub cumulative_volume: f64,
    pub change: Option<f64>,
    pub change_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub last: f64,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub prev_close: Option<f64>,
    pub change: Option<f64>,
    pub change_percent: Option<f64>,
    pub volume: Option<f64>,
    pub turnover: Option<f64>,
    pub status: TradingStatus,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthLevel {
    pub position: u32,
    pub price: f64,
    pub volume: f64,
    pub orders: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Depth {
    pub asks: Vec<DepthLevel>,
    pub bids: Vec<DepthLevel>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kline {
    pub period: u8,
    pub open_time_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: Option<f64>,
    pub turnover: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Tick(Tick),
    Quote(Quote),
    Depth(Depth),
    Kline(Kline),
}

impl Payload {
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Tick(_) => Kind::Tick,
            Payload::Quote(_) => Kind::Quote,
            Payload::Depth(_) => Kind::Depth,
            Payload::Kline(k) => Kind::Kline(k.period),
        }
    }
}

/// A normalized, derived and sequenced update: what the encoders and the fan-out consume.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketUpdate {
    /// Canonical `CODE$REGION`, shared with the symbol's state (no per-update allocation).
    pub symbol: Arc<str>,
    /// `SYMBOL:kind`, likewise shared.
    pub channel: Arc<str>,
    pub seq: u64,
    pub epoch: Arc<str>,
    pub provider: Arc<str>,
    pub event_time_ms: i64,
    pub recv_time_ms: i64,
    pub payload: Payload,
}

impl MarketUpdate {
    pub fn kind(&self) -> Kind {
        self.payload.kind()
    }
}
