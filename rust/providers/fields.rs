//! Lenient field types shared by provider decoders: numbers that may arrive as JSON numbers
//! or numeric strings, and epoch timestamps in any common unit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::{CoreError, CoreResult, ErrorCode};

/// A number a provider may send as `1.5` or `"1.5"`. Non-finite values are rejected at use
/// (`finite`), not here, so the error can name the field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl<'de> Visitor<'de> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                v.trim()
                    .parse::<f64>()
                    .map(Num)
                    .map_err(|_| E::custom("expected a numeric string"))
            }
        }
        d.deserialize_any(NumVisitor)
    }
}

/// Text a provider echoes back (ping params, tokens) that may be a string or a number.
#[derive(Debug, Clone, PartialEq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

/// The field's value, which must be present and finite.
pub fn required(v: Option<Num>, kind: &str, field: &str) -> CoreResult<f64> {
    match v {
        Some(n) => finite(n, field),
        None => Err(CoreError::new(
            ErrorCode::InvalidField,
            format!("{kind} without field {field:?}"),
        )),
    }
}

/// The field's value if present; present values must be finite.
pub fn optional(v: Option<Num>, field: &str) -> CoreResult<Option<f64>> {
    v.map(|n| finite(n, field)).transpose()
}

fn finite(n: Num, field: &str) -> CoreResult<f64> {
    if n.0.is_finite() {
        Ok(n.0)
    } else {
        Err(CoreError::new(
            ErrorCode::InvalidField,
            format!("field {field:?} is not a finite number"),
        ))
    }
}

/// Integer code fields (status, direction); fractions and out-of-range values are `None`.
pub fn small_code(v: Option<Num>) -> Option<i64> {
    v.and_then(|n| (n.0.fract() == 0.0 && n.0.abs() < 1e6).then_some(n.0 as i64))
}

/// Epoch timestamps normalized to milliseconds. Providers send seconds, milliseconds,
/// microseconds or nanoseconds; the magnitude tells which (any date after 1973).
pub fn epoch_ms(v: Option<Num>, field: &str) -> CoreResult<Option<i64>> {
    let Some(x) = optional(v, field)? else {
        return Ok(None);
    };
    if x <= 0.0 {
        return Ok(None);
    }
    let ms = if x < 1e11 {
        x * 1e3
    } else if x < 1e14 {
        x
    } else if x < 1e17 {
        x / 1e3
    } else {
        x / 1e6
    };
    if ms > 1e16 {
        return Err(CoreError::new(
            ErrorCode::InvalidField,
            format!("field {field:?} is not a timestamp"),
        ));
    }
    Ok(Some(ms as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_numeric_strings() {
        let v: Vec<Num> = serde_json::from_str(r#"[1, 2.5, "3.25", " 4 "]"#).unwrap();
        assert_eq!(v, vec![Num(1.0), Num(2.5), Num(3.25), Num(4.0)]);
        assert!(serde_json::from_str::<Num>(r#""abc""#).is_err());
        assert!(serde_json::from_str::<Num>("[1]").is_err());
    }

    #[test]
    fn epochs_in_any_unit() {
        let ms = 1_731_689_407_000_i64;
        for raw in [
            1_731_689_407.0,
            1_731_689_407_000.0,
            1_731_689_407_000_000.0,
            1.731_689_407e18,
        ] {
            assert_eq!(epoch_ms(Some(Num(raw)), "t").unwrap(), Some(ms), "{raw}");
        }
        assert_eq!(epoch_ms(Some(Num(0.0)), "t").unwrap(), None);
        assert!(epoch_ms(Some(Num(f64::NAN)), "t").is_err());
    }

    #[test]
    fn text_accepts_numbers() {
        let t: Text = serde_json::from_str("1731688569840").unwrap();
        assert_eq!(t.0, "1731688569840");
        let t: Text = serde_json::from_str(r#""abc""#).unwrap();
        assert_eq!(t.0, "abc");
    }
}
