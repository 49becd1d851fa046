//! One decoder per provider protocol. Decoders turn frame bytes into control events or
//! observations (normalized payloads not yet derived or sequenced); they keep no state.

pub mod alpaca;
pub mod fields;
pub mod finnhub;
pub mod itick;

use crate::error::{CoreError, CoreResult, ErrorCode};
use crate::model::Payload;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    /// The provider's greeting after the WebSocket opens.
    Connected,
    Auth,
    Subscribe,
    Unsubscribe,
    Pong,
    /// Any other non-data frame (errors without an action, unknown replies).
    Notice,
}

impl ControlKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlKind::Connected => "connected",
            ControlKind::Auth => "auth",
            ControlKind::Subscribe => "subscribe",
            ControlKind::Unsubscribe => "unsubscribe",
            ControlKind::Pong => "pong",
            ControlKind::Notice => "notice",
        }
    }
}

/// A non-data frame, for the upstream adapter's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub kind: ControlKind,
    pub ok: bool,
    pub message: String,
    /// Echoed parameters (auth token, ping payload).
    pub params: Option<String>,
    /// The provider's own action name (iTick `resAc`), empty when absent.
    pub action: String,
}

/// A normalized payload before derivation and sequencing.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub event_time_ms: Option<i64>,
    pub payload: Payload,
}

/// What one provider frame holds, whatever the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Control(Control),
    /// A market observation; its canonical symbol is in the decoder's `symbol_out`.
    Market(Observation),
    /// Several observations (a provider that batches), each with its canonical symbol.
    Markets(Vec<(String, Observation)>),
}

/// The provider protocols the core decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Itick,
    /// A backup provider's protocol (trades only).
    Finnhub,
    /// A backup provider's protocol (trades, top-of-book quotes, minute bars).
    Alpaca,
}

impl Provider {
    pub fn parse(name: &str) -> CoreResult<Provider> {
        match name.to_ascii_lowercase().as_str() {
            "itick" => Ok(Provider::Itick),
            "finnhub" => Ok(Provider::Finnhub),
            "alpaca" => Ok(Provider::Alpaca),
            other => Err(CoreError::new(
                ErrorCode::InvalidField,
                format!("unknown provider {other:?}; known: itick, finnhub, alpaca"),
            )),
        }
    }

    /// Decodes one frame of this provider's protocol. The canonical symbol of a market
    /// observation is written to `symbol_out` (reused across frames, so no allocation).
    pub fn decode(self, frame: &[u8], symbol_out: &mut String) -> CoreResult<Decoded> {
        match self {
            Provider::Itick => itick::decode(frame, symbol_out).map(|f| match f {
                itick::ItickFrame::Control(c) => Decoded::Control(c),
                itick::ItickFrame::Market(o) => Decoded::Market(o),
            }),
            Provider::Finnhub => finnhub::decode(frame).map(|f| match f {
                finnhub::FinnhubFrame::Control(c) => Decoded::Control(c),
                finnhub::FinnhubFrame::Trades(t) => Decoded::Markets(t),
            }),
            Provider::Alpaca => alpaca::decode(frame).map(|f| match f {
                alpaca::AlpacaFrame::Control(c) => Decoded::Control(c),
                alpaca::AlpacaFrame::Data(d) => Decoded::Markets(d),
            }),
        }
    }

    /// The canonical form this provider's decoder gives a symbol it spells `raw`.
    pub fn canonical_symbol(self, raw: &str) -> CoreResult<String> {
        let mut out = String::new();
        match self {
            Provider::Itick => crate::model::symbol::canonicalize_into(raw, &mut out)?,
            Provider::Finnhub => finnhub::canonical_symbol(raw, &mut out)?,
            Provider::Alpaca => crate::model::symbol::canonicalize_parts(raw, "US", &mut out)?,
        }
        Ok(out)
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Itick => "itick",
            Provider::Finnhub => "finnhub",
            Provider::Alpaca => "alpaca",
        }
    }
}
