//! What an update is (tick, quote, depth, kline of a period) and the channel names built on it.

use crate::error::{CoreError, CoreResult, ErrorCode};

/// iTick's kline period codes, 1..=10 (1=1m ... 10=1M).
pub const KLINE_PERIODS: u8 = 10;

/// Number of distinct kinds per symbol: tick, quote, depth and one per kline period.
pub const KIND_SLOTS: usize = 3 + KLINE_PERIODS as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tick,
    Quote,
    Depth,
    /// Period code 1..=10.
    Kline(u8),
}

impl Kind {
    /// Parses the provider/client spelling: `tick`, `quote`, `depth`, `kline@N`.
    pub fn parse(raw: &str) -> CoreResult<Kind> {
        let raw = raw.trim();
        // Case-insensitive without allocating: this runs once per provider frame.
        let is = |name: &str| raw.eq_ignore_ascii_case(name);
        if is("tick") {
            Ok(Kind::Tick)
        } else if is("quote") {
            Ok(Kind::Quote)
        } else if is("depth") {
            Ok(Kind::Depth)
        } else {
            let period = raw
                .get(..6)
                .filter(|p| p.eq_ignore_ascii_case("kline@"))
                .and_then(|_| raw[6..].parse::<u8>().ok());
            match period {
                Some(p) if (1..=KLINE_PERIODS).contains(&p) => Ok(Kind::Kline(p)),
                _ => Err(CoreError::new(
                    ErrorCode::InvalidType,
                    format!(
                        "unknown type {:?}: expected tick, quote, depth or kline@1..kline@10",
                        raw.chars().take(32).collect::<String>()
                    ),
                )),
            }
        }
    }

    pub fn from_period(period: i64) -> CoreResult<Kind> {
        if (1..=KLINE_PERIODS as i64).contains(&period) {
            Ok(Kind::Kline(period as u8))
        } else {
            Err(CoreError::new(
                ErrorCode::InvalidField,
                format!("kline period {period} is not 1..10"),
            ))
        }
    }

    /// Dense index for per-symbol arrays (sequence counters, channel names).
    pub const fn slot(self) -> usize {
        match self {
            Kind::Tick => 0,
            Kind::Quote => 1,
            Kind::Depth => 2,
            Kind::Kline(p) => 2 + p as usize,
        }
    }

    pub fn name(self) -> &'static str {
        const KLINES: [&str; KLINE_PERIODS as usize] = [
            "kline@1", "kline@2", "kline@3", "kline@4", "kline@5", "kline@6", "kline@7", "kline@8",
            "kline@9", "kline@10",
        ];
        match self {
            Kind::Tick => "tick",
            Kind::Quote => "quote",
            Kind::Depth => "depth",
            Kind::Kline(p) => KLINES[(p - 1) as usize],
        }
    }

    /// Short family name used in the seed JSON's inner `type` field.
    pub fn family(self) -> &'static str {
        match self {
            Kind::Kline(_) => "kline",
            other => other.name(),
        }
    }
}

/// `SYMBOL:kind`, e.g. `AAPL$US:quote`, `700$HK:kline@1`.
pub fn channel_name(canonical_symbol: &str, kind: Kind) -> String {
    let mut s = String::with_capacity(canonical_symbol.len() + 1 + 8);
    s.push_str(canonical_symbol);
    s.push(':');
    s.push_str(kind.name());
    s
}

/// Splits and validates a channel name, canonicalizing its symbol.
pub fn parse_channel(raw: &str) -> CoreResult<(String, Kind)> {
    let Some((sym, kind)) = raw.rsplit_once(':') else {
        return Err(CoreError::new(
            ErrorCode::InvalidField,
            "channel must be SYMBOL:type",
        ));
    };
    Ok((crate::model::symbol::canonicalize(sym)?, Kind::parse(kind)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_slots_are_dense() {
        let mut seen = [false; KIND_SLOTS];
        for name in ["tick", "quote", "depth"]
            .into_iter()
            .map(String::from)
            .chain((1..=10).map(|p| format!("kline@{p}")))
        {
            let k = Kind::parse(&name).unwrap();
            assert_eq!(k.name(), name);
            assert!(!seen[k.slot()]);
            seen[k.slot()] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(Kind::parse("QUOTE").unwrap(), Kind::Quote);
    }

    #[test]
    fn rejects_unknown_kinds() {
        for bad in ["", "bar", "kline", "kline@0", "kline@11", "kline@x"] {
            assert_eq!(
                Kind::parse(bad).unwrap_err().code,
                ErrorCode::InvalidType,
                "{bad}"
            );
        }
    }

    #[test]
    fn channels() {
        assert_eq!(channel_name("AAPL$US", Kind::Kline(1)), "AAPL$US:kline@1");
        assert_eq!(
            parse_channel("aapl.us:quote").unwrap(),
            ("AAPL$US".to_string(), Kind::Quote)
        );
        assert!(parse_channel("AAPL$US").is_err());
    }
}
