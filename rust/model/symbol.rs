//! Canonical symbols: `CODE$REGION`, upper-case.
//!
//! Providers and clients spell symbols several ways (`AAPL$US`, `aapl$us`, `AAPL.US`,
//! `600519.SH`). Everything past the decoder sees only the canonical form, so channel names,
//! subscription keys and pushes agree byte for byte.

use crate::error::{CoreError, CoreResult, ErrorCode};

/// Longest accepted code part. Exchange codes are short; the bound keeps garbage from
/// turning into huge hash keys.
pub const MAX_CODE_LEN: usize = 24;

/// Writes the canonical form of `raw` into `out` (cleared first). Reusing `out` lets the hot
/// path normalize without allocating.
///
/// The separator is the last `$`, or failing that the last `.`, so codes that contain a dot
/// (`BRK.B$US`) survive when written with `$`.
pub fn canonicalize_into(raw: &str, out: &mut String) -> CoreResult<()> {
    out.clear();
    let raw = raw.trim();
    let split = raw.rfind('$').or_else(|| raw.rfind('.'));
    let Some(at) = split else {
        return Err(invalid(raw, "expected CODE$REGION or CODE.REGION"));
    };
    let (code, region) = (&raw[..at], &raw[at + 1..]);
    if code.is_empty() || code.len() > MAX_CODE_LEN {
        return Err(invalid(raw, "code must be 1 to 24 characters"));
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(invalid(
            raw,
            "code may hold only letters, digits, '.', '-' and '_'",
        ));
    }
    if !(2..=3).contains(&region.len()) || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(invalid(raw, "region must be 2 or 3 letters"));
    }
    out.reserve(code.len() + 1 + region.len());
    out.extend(code.chars().map(|c| c.to_ascii_uppercase()));
    out.push('$');
    out.extend(region.chars().map(|c| c.to_ascii_uppercase()));
    Ok(())
}

/// Joins a bare code with a separate region field (some iTick clients read `r`).
pub fn canonicalize_parts(code: &str, region: &str, out: &mut String) -> CoreResult<()> {
    let mut joined = String::with_capacity(code.len() + 1 + region.len());
    joined.push_str(code.trim());
    joined.push('$');
    joined.push_str(region.trim());
    canonicalize_into(&joined, out)
}

pub fn canonicalize(raw: &str) -> CoreResult<String> {
    let mut out = String::new();
    canonicalize_into(raw, &mut out)?;
    Ok(out)
}

/// The region part of a canonical symbol.
pub fn region_of(canonical: &str) -> &str {
    canonical.rsplit_once('$').map_or("", |(_, r)| r)
}

fn invalid(raw: &str, why: &str) -> CoreError {
    let shown: String = raw.chars().take(40).collect();
    CoreError::new(
        ErrorCode::InvalidSymbol,
        format!("invalid symbol {shown:?}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_spelling() {
        for (raw, want) in [
            ("AAPL$US", "AAPL$US"),
            ("aapl$us", "AAPL$US"),
            ("AAPL.US", "AAPL$US"),
            ("600519.SH", "600519$SH"),
            (" 700$hk ", "700$HK"),
            ("BRK.B$US", "BRK.B$US"),
            ("BTCUSDT$BA", "BTCUSDT$BA"),
        ] {
            assert_eq!(canonicalize(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            "",
            "AAPL",
            "$US",
            "AAPL$",
            "AAPL$U",
            "AAPL$USAA",
            "AA PL$US",
            "AAPL$U1",
            "A\"B$US",
        ] {
            let err = canonicalize(raw).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidSymbol, "{raw}");
        }
        assert!(canonicalize(&format!("{}$US", "A".repeat(25))).is_err());
    }

    #[test]
    fn joins_separate_region() {
        let mut out = String::new();
        canonicalize_parts("aapl", "us", &mut out).unwrap();
        assert_eq!(out, "AAPL$US");
        assert_eq!(region_of("700$HK"), "HK");
    }
}
