//! The fast path of `itick::decode`: a strict, allocation-free JSON scanner specialised to
//! the frame shapes iTick sends, filling the same `Frame` the serde path fills.
//!
//! Contract: `frame` returns `Some` only for input `serde_json::from_slice::<Frame>` accepts,
//! and then with exactly the values serde would produce, so classification cannot tell the
//! two apart. Whenever that is in any doubt it returns `None` ("not handled") and the caller
//! runs serde, which also produces every error message. Declined, among others: a backslash,
//! control or non-ASCII byte in any string or key; a duplicate known key (serde errors); any
//! type serde would reject for a known field; a number whose f64 conversion is not
//! reproduced here (decimal exponent beyond ±22); unknown values nested deeper than
//! `MAX_SKIP_DEPTH`. The scanner only has to be right on what it accepts.

use std::borrow::Cow;

use super::{level, too_many_levels, Bar, Data, DepthSide, Frame, Level, MAX_DEPTH_LEVELS};
use crate::error::{CoreError, CoreResult};
use crate::model::DepthLevel;
use crate::providers::fields::{Num, Text};

/// A depth side, converted level by level while scanning so no raw `Level`s are buffered.
/// `into_levels` then answers what `Vec<Level>::into_levels` would: the length check
/// first, else the first failing level, else the levels.
#[derive(Default)]
pub(super) struct Side {
    levels: Vec<DepthLevel>,
    count: usize,
    error: Option<CoreError>,
}

impl DepthSide for Side {
    fn into_levels(self, side: &str) -> CoreResult<Vec<DepthLevel>> {
        if self.count > MAX_DEPTH_LEVELS {
            return Err(too_many_levels(side));
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.levels),
        }
    }
}

/// Fills `out` (a default `Frame`) from the whole frame, or returns `None` to defer to serde
/// (`out` is then partly filled; discard it). Filling in place rather than returning the
/// frame matters: it is several hundred bytes, and copying it was a third of the time.
pub(super) fn frame<'a>(bytes: &'a [u8], out: &mut Frame<'a, Side>) -> Option<()> {
    let mut sc = Scanner { b: bytes, i: 0 };
    sc.frame(out)?;
    sc.ws();
    // Like `from_slice`: nothing but whitespace may follow the value.
    (sc.i == bytes.len()).then_some(())
}

/// Unknown values nested deeper than this are left to serde (which accepts any depth when
/// ignoring); the bound keeps the array/object stack in one `u64`.
const MAX_SKIP_DEPTH: u32 = 64;

/// `serde_json`'s powers of ten (`de.rs`, `POW10`), only as far as they are exact, so these
/// literals equal its table entries and the conversion below reproduces its result.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// A JSON number as `serde_json` classifies it before a visitor sees it.
enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
    /// Valid JSON, but a conversion not reproduced here: fine to skip, declined as a value.
    Unconverted,
}

/// `serde_json`'s `overflow!` for the significand: would `a * 10 + digit` exceed u64?
fn overflows(a: u64, digit: u64) -> bool {
    a >= u64::MAX / 10 && (a > u64::MAX / 10 || digit > u64::MAX % 10)
}

struct Scanner<'a> {
    b: &'a [u8],
    /// Never past `b.len()`: the scanner only steps over bytes it has looked at.
    i: usize,
}

impl<'a> Scanner<'a> {
    /// The next byte, or 0 at the end; 0 is invalid everywhere, so the end needs no case.
    #[inline]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    /// JSON whitespace, exactly serde_json's set.
    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\t' | b'\r') {
            self.i += 1;
        }
    }

    /// Skips whitespace, then consumes `c`.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek() == c).then(|| self.i += 1)
    }

    /// Marks known key number `bit` seen; a second sighting is a serde "duplicate field"
    /// error, so it declines.
    #[inline]
    fn once(&mut self, seen: &mut u32, bit: u32) -> Option<&mut Self> {
        if *seen & (1 << bit) != 0 {
            return None;
        }
        *seen |= 1 << bit;
        Some(self)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// The rest of a string whose opening quote is consumed. Printable ASCII only: escapes
    /// would need unescaping (serde hands over an owned copy) and other bytes UTF-8 checks.
    #[inline]
    fn str_body(&mut self) -> Option<&'a [u8]> {
        let rest = &self.b[self.i..];
        let n = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))?;
        if rest[n] != b'"' {
            return None;
        }
        self.i += n + 1;
        Some(&rest[..n])
    }

    fn str_value(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_body()?).ok()
    }

    /// Walks an object; `field` gets each key with the scanner at its value and must
    /// consume the value.
    #[inline]
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek() == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.str_body()?;
            self.eat(b':')?;
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek() {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn frame(&mut self, f: &mut Frame<'a, Side>) -> Option<()> {
        let s = &mut 0;
        self.object(|sc, key| {
            match key {
                b"code" => f.code = sc.once(s, 0)?.num()?,
                b"resAc" => f.res_ac = sc.once(s, 1)?.string()?,
                b"msg" => f.msg = sc.once(s, 2)?.string()?,
                b"data" => sc.once(s, 3)?.data(&mut f.data)?,
                _ => sc.skip()?,
            };
            Some(())
        })
    }

    /// `data` is `null` (left `None`) or an object; a duplicate was already declined.
    fn data(&mut self, slot: &mut Option<Data<'a, Side>>) -> Option<()> {
        if self.peek() == b'n' {
            return self.literal(b"null");
        }
        let d = slot.insert(Data::default());
        let s = &mut 0;
        self.object(|sc, key| {
            match key {
                b"s" => d.s = sc.once(s, 0)?.string()?,
                b"r" => d.r = sc.once(s, 1)?.string()?,
                b"type" => d.kind = sc.once(s, 2)?.string()?,
                b"ld" => d.ld = sc.once(s, 3)?.num()?,
                b"o" => d.o = sc.once(s, 4)?.num()?,
                b"h" => d.h = sc.once(s, 5)?.num()?,
                b"l" => d.l = sc.once(s, 6)?.num()?,
                b"c" => d.c = sc.once(s, 7)?.num()?,
                b"p" => d.p = sc.once(s, 8)?.num()?,
                b"ch" => d.ch = sc.once(s, 9)?.num()?,
                b"chp" => d.chp = sc.once(s, 10)?.num()?,
                b"v" => d.v = sc.once(s, 11)?.num()?,
                b"tu" => d.tu = sc.once(s, 12)?.num()?,
                b"t" => d.t = sc.once(s, 13)?.num()?,
                b"ts" => d.ts = sc.once(s, 14)?.num()?,
                b"d" => d.d = sc.once(s, 15)?.num()?,
                b"te" => d.te = sc.once(s, 16)?.num()?,
                b"a" => d.a = sc.once(s, 17)?.side()?,
                b"b" => d.b = sc.once(s, 18)?.side()?,
                b"k" => sc.once(s, 19)?.bar(&mut d.k)?,
                b"params" => d.params = sc.once(s, 20)?.text()?,
                _ => sc.skip()?,
            };
            Some(())
        })
    }

    fn bar(&mut self, slot: &mut Option<Bar>) -> Option<()> {
        if self.peek() == b'n' {
            return self.literal(b"null");
        }
        let k = slot.insert(Bar::default());
        let s = &mut 0;
        self.object(|sc, key| {
            match key {
                b"o" => k.o = sc.once(s, 0)?.num()?,
                b"h" => k.h = sc.once(s, 1)?.num()?,
                b"l" => k.l = sc.once(s, 2)?.num()?,
                b"c" => k.c = sc.once(s, 3)?.num()?,
                b"v" => k.v = sc.once(s, 4)?.num()?,
                b"tu" => k.tu = sc.once(s, 5)?.num()?,
                b"t" => k.t = sc.once(s, 6)?.num()?,
                _ => sc.skip()?,
            };
            Some(())
        })
    }

    /// A depth side: `null` or an array of level objects (serde would also take a level
    /// written as an array; that is declined).
    fn side(&mut self) -> Option<Option<Side>> {
        if self.peek() == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        self.eat(b'[')?;
        let mut side = Side::default();
        self.ws();
        if self.peek() == b']' {
            self.i += 1;
            return Some(Some(side));
        }
        loop {
            let lv = self.level()?;
            // Past the first failure or the bound the result is already decided; the rest
            // of the array is still scanned, as serde would.
            if side.count < MAX_DEPTH_LEVELS && side.error.is_none() {
                match level(side.count, &lv) {
                    Ok(l) => side.levels.push(l),
                    Err(e) => side.error = Some(e),
                }
            }
            side.count += 1;
            self.ws();
            match self.peek() {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(Some(side));
                }
                _ => return None,
            }
        }
    }

    fn level(&mut self) -> Option<Level> {
        let mut lv = Level::default();
        let s = &mut 0;
        self.object(|sc, key| {
            match key {
                b"po" => lv.po = sc.once(s, 0)?.num()?,
                b"p" => lv.p = sc.once(s, 1)?.num()?,
                b"v" => lv.v = sc.once(s, 2)?.num()?,
                b"o" => lv.o = sc.once(s, 3)?.num()?,
                _ => sc.skip()?,
            };
            Some(())
        })?;
        Some(lv)
    }

    /// `Option<Cow<str>>`: a string (borrowed, as serde borrows escape-free strings) or null.
    fn string(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.peek() {
            b'"' => {
                self.i += 1;
                self.str_value().map(|s| Some(Cow::Borrowed(s)))
            }
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    /// `Option<Num>`: what `Num`'s visitor makes of a number, a numeric string or null.
    fn num(&mut self) -> Option<Option<Num>> {
        match self.peek() {
            b'"' => {
                self.i += 1;
                // The same expression as `Num::visit_str`; a failure is a serde error.
                let v = self.str_value()?.trim().parse::<f64>().ok()?;
                Some(Some(Num(v)))
            }
            b'n' => self.literal(b"null").map(|()| None),
            _ => Some(Some(Num(match self.number()? {
                Number::U64(v) => v as f64,
                Number::I64(v) => v as f64,
                Number::F64(v) => v,
                Number::Unconverted => return None,
            }))),
        }
    }

    /// `Option<Text>`: a string or null as for `string`, or a number rendered as `Text`'s
    /// visitor renders it.
    fn text(&mut self) -> Option<Option<Text<'a>>> {
        if matches!(self.peek(), b'"' | b'n') {
            return self.string().map(|s| s.map(Text));
        }
        let shown = match self.number()? {
            Number::U64(v) => v.to_string(),
            Number::I64(v) => v.to_string(),
            Number::F64(v) => v.to_string(),
            Number::Unconverted => return None,
        };
        Some(Some(Text(Cow::Owned(shown))))
    }

    /// A number, converted as serde_json's `parse_integer` and `f64_from_parts` convert it
    /// (without `float_roundtrip`, which this crate does not enable; so not always correctly
    /// rounded, and `str::parse` would differ): digits accumulate into a `u64` significand
    /// until the next would overflow it; integer digits past that raise the exponent, and
    /// fraction digits past it are dropped. `None` only for bad grammar.
    fn number(&mut self) -> Option<Number> {
        let start = self.i;
        let positive = self.peek() != b'-';
        if !positive {
            self.i += 1;
        }
        let (mut sig, mut exponent, mut float) = (0u64, 0i32, false);
        match self.peek() {
            b'0' => {
                self.i += 1;
                if self.peek().is_ascii_digit() {
                    return None; // a leading zero
                }
            }
            b'1'..=b'9' => {
                while let c @ b'0'..=b'9' = self.peek() {
                    let digit = u64::from(c - b'0');
                    if overflows(sig, digit) {
                        break;
                    }
                    self.i += 1;
                    sig = sig * 10 + digit;
                }
                // Past the overflow serde goes f64, and each further digit only scales.
                while self.peek().is_ascii_digit() {
                    self.i += 1;
                    exponent = exponent.saturating_add(1);
                    float = true;
                }
            }
            _ => return None,
        }
        if self.peek() == b'.' {
            self.i += 1;
            let digits = self.i;
            while let c @ b'0'..=b'9' = self.peek() {
                let digit = u64::from(c - b'0');
                if overflows(sig, digit) {
                    break;
                }
                self.i += 1;
                sig = sig * 10 + digit;
                exponent = exponent.saturating_sub(1);
            }
            // Fraction digits past the overflow serde drops.
            while self.peek().is_ascii_digit() {
                self.i += 1;
            }
            if self.i == digits {
                return None;
            }
            float = true;
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.i += 1;
            let negative = self.peek() == b'-';
            if matches!(self.peek(), b'+' | b'-') {
                self.i += 1;
            }
            let (digits, mut exp) = (self.i, 0i32);
            while let c @ b'0'..=b'9' = self.peek() {
                self.i += 1;
                exp = exp.saturating_mul(10).saturating_add(i32::from(c - b'0'));
            }
            if self.i == digits {
                return None;
            }
            exponent = if negative {
                exponent.saturating_sub(exp)
            } else {
                exponent.saturating_add(exp)
            };
            float = true;
        }
        Some(match (float, positive) {
            (false, true) => Number::U64(sig),
            // serde makes `-0` and negatives below i64::MIN an f64.
            (false, false) => match (sig as i64).wrapping_neg() {
                neg if neg >= 0 => Number::F64(-(sig as f64)),
                neg => Number::I64(neg),
            },
            // In a longer number, saturated exponent sums could land back within ±22 where
            // serde (whose exponent overflowed i32) errors or gives zero instead.
            _ if self.i - start > 4096 => Number::Unconverted,
            (true, _) => from_parts(positive, sig, exponent).map_or(Number::Unconverted, Number::F64),
        })
    }

    /// Validates and skips any value, iteratively; `depth` counts the open containers and
    /// bit `n` of `arrays` says whether container `n` is an array.
    fn skip(&mut self) -> Option<()> {
        let mut depth = 0;
        let mut arrays = 0u64;
        loop {
            self.ws();
            match self.peek() {
                open @ (b'{' | b'[') => {
                    self.i += 1;
                    if depth == MAX_SKIP_DEPTH {
                        return None;
                    }
                    let close = if open == b'[' { b']' } else { b'}' };
                    arrays = (arrays & !(1 << depth)) | (u64::from(open == b'[') << depth);
                    depth += 1;
                    self.ws();
                    if self.peek() == close {
                        self.i += 1;
                        depth -= 1;
                    } else {
                        if open == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.i += 1;
                    self.str_body()?;
                }
                b'-' | b'0'..=b'9' => _ = self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // After a value: close finished containers, or step past a comma to the next.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let in_array = arrays >> (depth - 1) & 1 == 1;
                self.ws();
                match self.peek() {
                    b',' => {
                        self.i += 1;
                        if !in_array {
                            self.key()?;
                        }
                        break;
                    }
                    b']' if in_array => (),
                    b'}' if !in_array => (),
                    _ => return None,
                }
                self.i += 1;
                depth -= 1;
            }
        }
    }

    /// An object key being skipped, with its colon.
    fn key(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.str_body()?;
        self.eat(b':')
    }
}

/// serde_json's `f64_from_parts` for the exponents its table holds exactly; others decline.
fn from_parts(positive: bool, sig: u64, exponent: i32) -> Option<f64> {
    let pow = *POW10.get(exponent.unsigned_abs() as usize)?;
    let f = if exponent >= 0 {
        sig as f64 * pow
    } else {
        sig as f64 / pow
    };
    // |f| <= u64::MAX * 1e22, far from infinity, so serde's overflow error cannot occur.
    Some(if positive { f } else { -f })
}
