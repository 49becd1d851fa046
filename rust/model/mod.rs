//! Normalized types shared by decoders, state and encoders.
pub mod kind;
pub mod symbol;
pub mod update;

pub use kind::{channel_name, parse_channel, Kind, KIND_SLOTS};
pub use update::{
    Depth, DepthLevel, Direction, Kline, MarketUpdate, Payload, Quote, Session, Tick, TradingStatus,
};
