//! Trading days per region, so derived daily values (cumulative volume, the day's reference
//! price) reset at the exchange's midnight rather than UTC's.
//!
//! Fixed offsets cover every region iTick serves except the US, which follows the US daylight
//! saving rule (second Sunday of March to first Sunday of November, 02:00 local). Unknown
//! regions, forex (GB) and crypto (BA) use UTC days.

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_HOUR: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayRule {
    Fixed { offset_minutes: i32 },
    UsEastern,
}

impl DayRule {
    pub fn for_region(region: &str) -> DayRule {
        let offset_minutes = match region {
            "US" => return DayRule::UsEastern,
            "HK" | "SH" | "SZ" | "SG" | "TW" | "CN" | "MY" => 8 * 60,
            "JP" | "KR" => 9 * 60,
            "IN" => 5 * 60 + 30,
            "TH" | "VN" | "ID" => 7 * 60,
            "AU" => 10 * 60,
            _ => 0,
        };
        DayRule::Fixed { offset_minutes }
    }

    /// Days since 1970-01-01 in the region's local time.
    pub fn day_of(self, epoch_ms: i64) -> i64 {
        let offset_ms = match self {
            DayRule::Fixed { offset_minutes } => offset_minutes as i64 * 60_000,
            DayRule::UsEastern => {
                if us_dst_in_effect(epoch_ms) {
                    -4 * MS_PER_HOUR
                } else {
                    -5 * MS_PER_HOUR
                }
            }
        };
        (epoch_ms + offset_ms).div_euclid(MS_PER_DAY)
    }
}

fn us_dst_in_effect(epoch_ms: i64) -> bool {
    let (year, _, _) = civil_from_days(epoch_ms.div_euclid(MS_PER_DAY));
    // 02:00 EST = 07:00 UTC on the start day; 02:00 EDT = 06:00 UTC on the end day.
    let start = days_from_civil(year, 3, nth_sunday(year, 3, 2)) * MS_PER_DAY + 7 * MS_PER_HOUR;
    let end = days_from_civil(year, 11, nth_sunday(year, 11, 1)) * MS_PER_DAY + 6 * MS_PER_HOUR;
    (start..end).contains(&epoch_ms)
}

fn nth_sunday(year: i64, month: u32, n: u32) -> u32 {
    let first = days_from_civil(year, month, 1);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday gives (days + 4) mod 7.
    let weekday = (first + 4).rem_euclid(7) as u32;
    1 + (7 - weekday) % 7 + 7 * (n - 1)
}

/// Howard Hinnant's days-from-civil algorithm (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_ms(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        days_from_civil(y, m, d) * MS_PER_DAY + h * MS_PER_HOUR + min * 60_000
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1000, 0, 1, 18_000, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn us_dst_boundaries_2024() {
        // 2024: DST from Sun 10 March 07:00 UTC to Sun 3 November 06:00 UTC.
        assert_eq!(nth_sunday(2024, 3, 2), 10);
        assert_eq!(nth_sunday(2024, 11, 1), 3);
        assert!(!us_dst_in_effect(utc_ms(2024, 3, 10, 6, 59)));
        assert!(us_dst_in_effect(utc_ms(2024, 3, 10, 7, 0)));
        assert!(us_dst_in_effect(utc_ms(2024, 11, 3, 5, 59)));
        assert!(!us_dst_in_effect(utc_ms(2024, 11, 3, 6, 0)));
    }

    #[test]
    fn local_days() {
        let us = DayRule::for_region("US");
        // 2024-07-01 03:59 UTC is still 2024-06-30 in New York (EDT, UTC-4).
        assert_eq!(us.day_of(utc_ms(2024, 7, 1, 3, 59)), days_from_civil(2024, 6, 30));
        assert_eq!(us.day_of(utc_ms(2024, 7, 1, 4, 0)), days_from_civil(2024, 7, 1));
        // January: EST, UTC-5.
        assert_eq!(us.day_of(utc_ms(2024, 1, 2, 4, 59)), days_from_civil(2024, 1, 1));
        let hk = DayRule::for_region("HK");
        // 16:00 UTC is midnight in Hong Kong.
        assert_eq!(hk.day_of(utc_ms(2024, 7, 1, 16, 0)), days_from_civil(2024, 7, 2));
        assert_eq!(
            DayRule::for_region("BA").day_of(utc_ms(2024, 7, 1, 23, 59)),
            days_from_civil(2024, 7, 1)
        );
    }
}
