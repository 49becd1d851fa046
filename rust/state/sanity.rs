//! Plausibility checks on what a provider sends, before it is numbered. An update no market
//! could have produced (a negative or non-finite price or volume, a size beyond any market's,
//! an event time far from now) is dropped and counted by reason, never forwarded: clients get
//! garbage from nowhere, and dropping before sequencing leaves no hole in a channel's seq.

use crate::model::{Payload, Tick};
use crate::providers::Observation;

/// Why an update was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implausible {
    /// A price negative, not finite, or past `max_price`.
    Price,
    /// A volume (or turnover, order count) negative, not finite, or past `max_volume`.
    Volume,
    /// An event time more than `max_past_ms` before or `max_future_ms` after its receipt.
    Time,
}

impl Implausible {
    pub const ALL: [Implausible; 3] = [Implausible::Price, Implausible::Volume, Implausible::Time];

    pub fn name(self) -> &'static str {
        match self {
            Implausible::Price => "price",
            Implausible::Volume => "volume",
            Implausible::Time => "time",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SanityLimits {
    pub max_price: f64,
    pub max_volume: f64,
    pub max_past_ms: i64,
    pub max_future_ms: i64,
}

impl Default for SanityLimits {
    fn default() -> Self {
        SanityLimits {
            // Well above any listed instrument's price and any day's volume in any currency.
            max_price: 1e12,
            max_volume: 1e15,
            // A quote's time is its last trade's (an illiquid or suspended instrument's can be
            // months old); what this catches is a time in seconds read as milliseconds (1970).
            max_past_ms: 3650 * 86_400_000,
            // Clocks drift; this catches microseconds read as milliseconds, and year 5138.
            max_future_ms: 3_600_000,
        }
    }
}

impl SanityLimits {
    /// `None` if `obs` is plausible, else the first reason it is not.
    pub fn check(&self, obs: &Observation, recv_time_ms: i64) -> Option<Implausible> {
        if let Some(t) = obs.event_time_ms {
            if t < recv_time_ms.saturating_sub(self.max_past_ms)
                || t > recv_time_ms.saturating_add(self.max_future_ms)
            {
                return Some(Implausible::Time);
            }
        }
        let price = |p: f64| !(p.is_finite() && (0.0..=self.max_price).contains(&p));
        let volume = |v: f64| !(v.is_finite() && (0.0..=self.max_volume).contains(&v));
        let opt_volume = |v: Option<f64>| v.is_some_and(volume);
        let (bad_price, bad_volume) = match &obs.payload {
            Payload::Tick(Tick {
                price: p,
                volume: v,
                turnover,
                cumulative_volume,
                ..
            }) => (
                price(*p),
                volume(*v) || opt_volume(*turnover) || volume(*cumulative_volume),
            ),
            Payload::Quote(q) => (
                price(q.last)
                    || [q.open, q.high, q.low, q.prev_close]
                        .into_iter()
                        .flatten()
                        .any(price),
                opt_volume(q.volume) || opt_volume(q.turnover),
            ),
            Payload::Depth(d) => {
                let levels = || d.asks.iter().chain(&d.bids);
                (
                    levels().any(|l| price(l.price)),
                    levels().any(|l| volume(l.volume) || opt_volume(l.orders)),
                )
            }
            Payload::Kline(k) => (
                [k.open, k.high, k.low, k.close].into_iter().any(price),
                opt_volume(k.volume) || opt_volume(k.turnover),
            ),
        };
        if bad_price {
            Some(Implausible::Price)
        } else if bad_volume {
            Some(Implausible::Volume)
        } else {
            None
        }
    }
}
