//! Per-symbol derived values: change and change % against a reference price, and the
//! day's cumulative tick volume.
//!
//! The reference price is the provider's previous close (`p`) when it has sent one today,
//! otherwise the first open seen for the day (a quote's `o`, or failing that the first
//! traded price). A provider's own `ch`/`chp` are kept as sent: they are authoritative and
//! may use a reference the gateway cannot see.

use super::calendar::DayRule;
use crate::model::{Payload, Quote, Tick};

/// Derived values are rounded to these many decimals so float noise (225.2 - 226.27 =
/// -1.0700000000000216) never reaches clients.
const CHANGE_DECIMALS: i32 = 8;
const PERCENT_DECIMALS: i32 = 4;

#[derive(Debug, Clone)]
pub struct DailyState {
    rule: DayRule,
    day: Option<i64>,
    prev_close: Option<f64>,
    first_open: Option<f64>,
    cumulative_volume: f64,
}

impl DailyState {
    pub fn new(rule: DayRule) -> Self {
        DailyState {
            rule,
            day: None,
            prev_close: None,
            first_open: None,
            cumulative_volume: 0.0,
        }
    }

    /// Fills the derived fields of `payload` and updates the state it depends on.
    pub fn apply(&mut self, event_time_ms: i64, payload: &mut Payload) {
        self.roll_day(event_time_ms);
        match payload {
            Payload::Quote(q) => self.apply_quote(q),
            Payload::Tick(t) => self.apply_tick(t),
            Payload::Depth(_) | Payload::Kline(_) => {}
        }
    }

    fn roll_day(&mut self, event_time_ms: i64) {
        let day = self.rule.day_of(event_time_ms);
        // Only move forward: a late update from yesterday must not wipe today's totals.
        if self.day.is_none_or(|d| day > d) {
            self.day = Some(day);
            self.prev_close = None;
            self.first_open = None;
            self.cumulative_volume = 0.0;
        }
    }

    fn apply_quote(&mut self, q: &mut Quote) {
        if let Some(p) = q.prev_close {
            self.prev_close = Some(p);
        }
        if self.first_open.is_none() {
            self.first_open = q.open.filter(|o| *o != 0.0).or(Some(q.last));
        }
        if q.prev_close.is_none() {
            q.prev_close = self.prev_close;
        }
        let (change, pct) = self.change_of(q.last);
        q.change = q.change.or(change);
        q.change_percent = q.change_percent.or(pct);
    }

    fn apply_tick(&mut self, t: &mut Tick) {
        if self.first_open.is_none() {
            self.first_open = Some(t.price);
        }
        self.cumulative_volume += t.volume;
        t.cumulative_volume = round_to(self.cumulative_volume, CHANGE_DECIMALS);
        let (change, pct) = self.change_of(t.price);
        t.change = change;
        t.change_percent = pct;
    }

    fn change_of(&self, price: f64) -> (Option<f64>, Option<f64>) {
        let Some(reference) = self.prev_close.or(self.first_open).filter(|r| *r != 0.0) else {
            return (None, None);
        };
        let change = price - reference;
        (
            Some(round_to(change, CHANGE_DECIMALS)),
            Some(round_to(change / reference * 100.0, PERCENT_DECIMALS)),
        )
    }
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let scaled = x * scale;
    // Past 2^52 the value has no fractional digits left to clean up.
    if scaled.abs() < 4.5e15 {
        scaled.round() / scale
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Session, TradingStatus};

    const DAY_MS: i64 = 86_400_000;
    const T0: i64 = 1_731_689_407_000; // 2024-11-15 16:50 UTC, a US trading afternoon

    fn quote(last: f64, open: Option<f64>, prev_close: Option<f64>) -> Payload {
        Payload::Quote(Quote {
            last,
            open,
            high: None,
            low: None,
            prev_close,
            change: None,
            change_percent: None,
            volume: None,
            turnover: None,
            status: TradingStatus::Normal,
        })
    }

    fn tick(price: f64, volume: f64) -> Payload {
        Payload::Tick(Tick {
            price,
            volume,
            direction: Direction::Neutral,
            session: Session::Regular,
            turnover: None,
            status: None,
            cumulative_volume: 0.0,
            change: None,
            change_percent: None,
        })
    }

    fn quote_change(p: &Payload) -> (Option<f64>, Option<f64>, Option<f64>) {
        let Payload::Quote(q) = p else { panic!() };
        (q.prev_close, q.change, q.change_percent)
    }

    #[test]
    fn change_against_provider_prev_close() {
        let mut s = DailyState::new(DayRule::for_region("US"));
        let mut q = quote(225.215, Some(226.27), Some(224.0));
        s.apply(T0, &mut q);
        assert_eq!(quote_change(&q), (Some(224.0), Some(1.215), Some(0.5424)));
    }

    #[test]
    fn change_against_first_open_without_prev_close() {
        let mut s = DailyState::new(DayRule::for_region("US"));
        let mut q = quote(225.2, Some(226.27), None);
        s.apply(T0, &mut q);
        assert_eq!(quote_change(&q), (None, Some(-1.07), Some(-0.4729)));
        // The first open sticks for the day even if later quotes carry another open.
        let mut q = quote(227.27, Some(1.0), None);
        s.apply(T0 + 1000, &mut q);
        assert_eq!(quote_change(&q).1, Some(1.0));
    }

    #[test]
    fn provider_change_is_kept() {
        let mut s = DailyState::new(DayRule::for_region("US"));
        let mut q = quote(10.0, None, Some(9.0));
        if let Payload::Quote(q) = &mut q {
            q.change = Some(0.5);
        }
        s.apply(T0, &mut q);
        assert_eq!(quote_change(&q).1, Some(0.5));
    }

    #[test]
    fn ticks_accumulate_volume_per_day_and_reset() {
        let mut s = DailyState::new(DayRule::for_region("US"));
        let mut cum = vec![];
        for (t, v) in [(T0, 100.0), (T0 + 1, 50.5), (T0 + DAY_MS, 7.0), (T0 + 2, 1.0)] {
            let mut p = tick(10.0, v);
            s.apply(t, &mut p);
            let Payload::Tick(t) = p else { panic!() };
            cum.push(t.cumulative_volume);
        }
        // The late tick from the previous day adds to the current day rather than resetting it.
        assert_eq!(cum, vec![100.0, 150.5, 7.0, 8.0]);
    }

    #[test]
    fn tick_change_uses_quote_reference() {
        let mut s = DailyState::new(DayRule::for_region("HK"));
        let mut q = quote(100.0, Some(99.0), Some(98.0));
        s.apply(T0, &mut q);
        let mut t = tick(99.0, 1.0);
        s.apply(T0 + 5, &mut t);
        let Payload::Tick(t) = t else { panic!() };
        assert_eq!((t.change, t.change_percent), (Some(1.0), Some(1.0204)));
    }

    #[test]
    fn no_reference_no_change() {
        let mut s = DailyState::new(DayRule::for_region("US"));
        let mut q = quote(0.0, Some(0.0), None);
        s.apply(T0, &mut q);
        assert_eq!(quote_change(&q), (None, None, None));
    }
}
