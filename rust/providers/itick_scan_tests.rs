//! The scanner fast path against the serde reference: targeted cases, then generated and
//! mutated frames. When the fast path answers, it must answer exactly as serde does.

use proptest::prelude::*;

use super::tests::{market, same_as_serde};
use super::*;

#[test]
fn fast_path_takes_nulls_unknown_keys_and_classification_errors() {
    for frame in [
        r#"{"code":1,"data":{"s":"A$US","k":null,"a":null,"b":[],"params":null,"ld":1,"type":"tick"}}"#,
        // Classification errors come from shared code, so the fast path may answer them.
        r#"{"code":1,"data":{"s":"AAPL","ld":1,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"AAPL$US","b":[{"v":1}],"type":"depth"}}"#,
        " {\"code\":1,\"x\":{\"y\":[1,-2.5e-3,true,false,null,{}],\"z\":[]},\"msg\":\"hi\"}\r\n",
    ] {
        assert!(same_as_serde(frame.as_bytes()), "fast path declined {frame}");
    }
}

#[test]
fn fast_path_declines_what_it_cannot_reproduce() {
    for frame in [
        r#"{"code":1,"data":{"s":"A\u0041PL$US","ld":1,"type":"tick"}}"#, // escape
        "{\"code\":1,\"msg\":\"caf\u{e9}\"}",                             // non-ASCII
        r#"{"code":1,"code":1}"#,                                         // duplicate field
        r#"{"code":1,"data":{"s":"A$US","ld":1,"ld":2,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"A$US","ld":1e23,"type":"tick"}}"#, // beyond the exact powers
        r#"{"code":1,"data":{"s":"A$US","ld":"abc","type":"tick"}}"#,
        r#"{"code":1,"data":["A$US"]}"#, // serde reads structs from arrays too
        r#"{"code":1,"data":{"s":"A$US","b":[null],"type":"depth"}}"#,
        r#"{"code":1,"msg":"x",}"#,
        r#"{"code":1}x"#,
        r#"{"code":1,"x":{"a":[1}]}"#,
        r#"{"code":1,"x":[{"a":1]}"#,
        "{\"code\":1,\u{c}\"msg\":\"m\"}", // form feed: not JSON whitespace
        r#"{"code":01}"#,
        r#"{"code":1.}"#,
        r#"{"code":true}"#,
        "",
    ] {
        assert!(!same_as_serde(frame.as_bytes()), "fast path took {frame}");
    }
    // Unknown values: any depth is fine for serde; the scanner stops past 64 containers.
    let nested = |n| {
        format!(
            r#"{{"code":1,"x":{}0{},"msg":"m"}}"#,
            r#"[{"a":"#.repeat(n),
            "}]".repeat(n)
        )
    };
    assert!(same_as_serde(nested(32).as_bytes()));
    assert!(!same_as_serde(nested(33).as_bytes()));
}

#[test]
fn numbers_convert_exactly_as_serde_converts_them() {
    for n in [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "-1",
        "1.5",
        "0.1",
        "0.30000000000000004",
        "1e22",
        "1E+22",
        "1e-22",
        "9007199254740993",
        "18446744073709551615",
        "18446744073709551616",
        "18446744073709551615.5",
        "184467440737095516159.3",
        "123456789012345678901234",
        "-9223372036854775808",
        "-9223372036854775809",
        "-18446744073709551616",
        "0.12345678901234567890123",
        "3.0e-5",
        "1731689407000",
        "1731689407.123",
        "\"1.5\"",
        "\" 7 \"",
        "\"-0\"",
        "\"1e400\"",
        "\"inf\"",
        "\"NaN\"",
        "\".5\"",
        "\"+2\"",
        "null",
        // serde_json's default conversion is not correctly rounded; these are where it and
        // `str::parse` disagree, so a scanner using `parse` would fail here.
        "780.1246309558322749",
        "8748534153485358.512",
        // A digit past the significand's overflow, then one that would fit: serde keeps
        // scaling (integer part) or keeps dropping (fraction).
        "184467440737095516160",
        "1844.674407370955161906",
    ] {
        let tick = format!(r#"{{"code":1,"data":{{"s":"A$US","ld":{n},"t":{n},"type":"tick"}}}}"#);
        assert!(same_as_serde(tick.as_bytes()), "fast path declined {n}");
        let pong = format!(r#"{{"resAc":"pong","data":{{"params":{n}}}}}"#);
        same_as_serde(pong.as_bytes());
    }
    let (_, m) = market(r#"{"code":1,"data":{"s":"A$US","ld":780.1246309558322749,"type":"tick"}}"#);
    let Payload::Tick(t) = m.payload else { panic!() };
    let correctly_rounded: f64 = "780.1246309558322749".parse().unwrap();
    assert_eq!(
        (t.price, correctly_rounded),
        (780.1246309558323, 780.1246309558322)
    );
}

#[test]
fn depth_sides_fail_as_serde_fails() {
    let level = |i| match i {
        2 | 7 => r#"{"v":1}"#.to_string(), // no price
        _ => format!(r#"{{"p":{i}.5,"po":{i}}}"#),
    };
    for n in [0, 2, 3, 400, 401, 1000] {
        let side = (0..n).map(level).collect::<Vec<_>>().join(",");
        let good = (0..n)
            .map(|i| format!(r#"{{"p":{i}}}"#))
            .collect::<Vec<_>>()
            .join(",");
        for (a, b) in [(&side, &good), (&good, &side), (&good, &good)] {
            let frame = format!(r#"{{"code":1,"data":{{"s":"A$US","a":[{a}],"b":[{b}],"type":"depth"}}}}"#);
            assert!(same_as_serde(frame.as_bytes()), "fast path declined {n} levels");
        }
    }
}

/// JSON numbers the scanner always converts itself: the decimal exponent stays within ±22.
fn plain_number() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        (1_500_000_000_000u64..1_900_000_000_000).prop_map(|v| v.to_string()),
        "-?(0|[1-9][0-9]{0,21})(\\.[0-9]{1,8})?([eE][+-]?[0-9])?",
        "-?[1-9][0-9]{0,3}\\.[0-9]{1,4}",
        Just("-0".to_string()),
    ]
    .boxed()
}

/// Any JSON number, including ones the scanner leaves to serde.
fn wild_number() -> BoxedStrategy<String> {
    prop_oneof![
        plain_number(),
        "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?",
        any::<f64>()
            .prop_map(|v| format!("{v:?}"))
            .prop_filter("finite", |s| !s.contains(['i', 'N'])),
        any::<f64>()
            .prop_map(|v| format!("{v:e}"))
            .prop_filter("finite", |s| !s.contains(['i', 'N'])),
    ]
    .boxed()
}

/// A value for a `Num` field: a number, a numeric string or null.
fn num_value(number: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => number.clone(),
        1 => number.prop_map(|n| format!("\" {n}\"")),
        1 => prop::sample::select(&["null", "\"1.25\"", "\"NaN\"", "\"-inf\"", "\"+.5\""][..])
            .prop_map(String::from),
    ]
    .boxed()
}

/// Any JSON value, for keys the decoder does not know.
fn unknown_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop_oneof![Just("null"), Just("true"), Just("false")].prop_map(String::from),
        wild_number(),
        "\"[a-zA-Z0-9 _.:$/-]{0,8}\"",
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|kv| {
                let kv: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", kv.join(","))
            }),
        ]
    })
}

type Fields = Vec<(String, String)>;

/// Renders an object with its keys shuffled, unknown keys mixed in and whitespace between
/// tokens.
fn object(fields: impl Strategy<Value = Fields> + 'static) -> BoxedStrategy<String> {
    let extra = prop::collection::vec(("x[a-zA-Z0-9_]{0,5}", unknown_value()), 0..3);
    let ws = prop::collection::vec(prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,2}"], 4);
    (fields, extra, ws)
        .prop_flat_map(|(mut fields, extra, ws)| {
            fields.extend(extra);
            // Unknown keys may repeat; serde ignores each, so the frame stays valid.
            (Just(fields).prop_shuffle(), Just(ws))
        })
        .prop_map(|(fields, ws)| {
            let kv: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}\"{k}\"{}:{}{v}", ws[0], ws[1], ws[2]))
                .collect();
            format!("{{{}{}}}", kv.join(&format!("{},", ws[3])), ws[3])
        })
        // Boxed throughout: the unboxed strategy types nest deep enough to overflow the stack.
        .boxed()
}

/// The field `key` with probability `p`.
fn maybe(p: f64, key: &'static str, value: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Fields> {
    let field = move |v: Option<String>| v.map(|v| (key.to_string(), v)).into_iter().collect();
    prop::option::weighted(p, value).prop_map(field).boxed()
}

fn level(number: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    let n = || num_value(number.clone());
    let keys = (
        maybe(0.8, "po", n()),
        maybe(0.95, "p", n()),
        maybe(0.9, "v", n()),
        maybe(0.7, "o", n()),
    );
    object(keys.prop_map(|(a, b, c, d)| [a, b, c, d].concat()))
}

fn market_frame(number: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    let n = || num_value(number.clone());
    let t = prop_oneof![
        6 => (1_500_000_000_000u64..1_900_000_000_000).prop_map(|v| v.to_string()),
        1 => (0..12u8).prop_map(|period| period.to_string()), // the nested kline form's period
        1 => n(),
    ];
    let side = prop::collection::vec(level(number.clone()), 0..6);
    let side = side.prop_map(|v| format!("[{}]", v.join(","))).boxed();
    let bar = || {
        (
            maybe(0.95, "o", n()),
            maybe(0.95, "h", n()),
            maybe(0.95, "l", n()),
            maybe(0.95, "c", n()),
        )
    };
    let bar = (
        bar(),
        maybe(0.8, "v", n()),
        maybe(0.6, "tu", n()),
        maybe(0.95, "t", t.clone()),
    )
        .prop_map(|((o, h, l, c), v, tu, t)| [o, h, l, c, v, tu, t].concat());
    let symbol = ("[A-Za-z0-9]{1,6}(\\.[A-Z])?", "[$.]", "[A-Za-z]{2,3}");
    let symbol = symbol.prop_map(|(c, s, r)| format!("\"{c}{s}{r}\""));
    let kind = prop::sample::select(&["tick", "quote", "depth", "kline@1", "KLINE@10", "Quote", "x"][..]);
    let head = (
        prop_oneof![9 => symbol, 1 => Just("\"700\"".to_string())],
        maybe(0.1, "r", Just("\"hk\"".to_string())),
        maybe(0.9, "type", kind.prop_map(|k| format!("\"{k}\""))),
        maybe(0.9, "t", t),
        maybe(0.1, "k", object(bar)),
    );
    let prices = (
        maybe(0.6, "ld", n()),
        maybe(0.5, "o", n()),
        maybe(0.5, "h", n()),
        maybe(0.5, "l", n()),
    );
    let more = (
        maybe(0.4, "c", n()),
        maybe(0.3, "p", n()),
        maybe(0.3, "ch", n()),
        maybe(0.3, "chp", n()),
    );
    let codes = (
        maybe(0.6, "v", n()),
        maybe(0.4, "tu", n()),
        maybe(0.4, "ts", n()),
        maybe(0.3, "d", n()),
    );
    let sides = (
        maybe(0.3, "te", n()),
        maybe(0.3, "a", side.clone()),
        maybe(0.3, "b", side),
    );
    let data = (head, prices, more, codes, sides).prop_map(|((s, r, ty, t, k), p, m, c, e)| {
        let s = vec![("s".to_string(), s)];
        [
            s, r, ty, t, k, p.0, p.1, p.2, p.3, m.0, m.1, m.2, m.3, c.0, c.1, c.2, c.3, e.0, e.1, e.2,
        ]
        .concat()
    });
    let code = prop_oneof![Just("1"), Just("0"), Just("\"1\""), Just("null")].prop_map(String::from);
    let top = (
        maybe(0.9, "code", code),
        maybe(0.2, "msg", Just("null".to_string())),
        object(data),
    );
    object(top.prop_map(|(c, m, d)| [c, m, vec![("data".to_string(), d)]].concat()))
}

fn control_frame(number: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    let action = prop::sample::select(&["auth", "subscribe", "Unsubscribe", "pong", "bogus"][..]);
    let params = prop_oneof![number, "\"[a-zA-Z0-9]{0,12}\"", Just("null".to_string())];
    let data = object(maybe(0.8, "params", params));
    let fields = (
        maybe(
            0.8,
            "code",
            prop_oneof![Just("1"), Just("0"), Just("2.5")].prop_map(String::from),
        ),
        maybe(0.7, "resAc", action.prop_map(|a| format!("\"{a}\""))),
        maybe(0.8, "msg", "\"[a-zA-Z ]{0,16}\""),
        maybe(0.5, "data", data),
    );
    object(fields.prop_map(|(a, b, c, d)| [a, b, c, d].concat()))
}

/// Small edits that keep a frame almost JSON: where strict parsing matters.
fn mutate(frame: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    const BYTES: &[u8] = b"{}[],:\" \\-+.eE0519ntfux\x00\x0c\x1f\x7f\xc3\xa9\xff";
    let mut bytes = frame.as_bytes().to_vec();
    for &(at, op, b) in edits {
        let at = at % (bytes.len() + 1);
        let b = BYTES[b as usize % BYTES.len()];
        match op % 4 {
            0 if at < bytes.len() => drop(bytes.remove(at)),
            1 => bytes.insert(at, b),
            2 if at < bytes.len() => bytes[at] = b,
            _ => bytes.truncate(at),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_takes_and_matches_valid_frames(
        frame in prop_oneof![market_frame(plain_number()), control_frame(plain_number())],
    ) {
        // Plain numbers, ASCII strings and unique keys: nothing to decline.
        prop_assert!(same_as_serde(frame.as_bytes()), "fast path declined {}", frame);
    }

    #[test]
    fn numbers_match_serde(n in prop_oneof![
        wild_number(),
        (-1e12..1e12f64).prop_map(|v| v.to_string()),
        (-1e6..1e6f64).prop_map(|v| format!("{v:.20}")),
        "[1-9][0-9]{15,25}\\.[0-9]{1,6}",
    ]) {
        let tick = format!(r#"{{"code":1,"data":{{"s":"A$US","ld":{n},"v":"{n}","type":"tick"}}}}"#);
        same_as_serde(tick.as_bytes());
        same_as_serde(format!(r#"{{"resAc":"pong","data":{{"params":{n}}}}}"#).as_bytes());
    }

    #[test]
    fn fast_path_matches_on_any_and_mutated_frames(
        frame in prop_oneof![
            market_frame(plain_number()), market_frame(wild_number()), control_frame(wild_number())
        ],
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
    ) {
        same_as_serde(&mutate(&frame, &edits));
    }
}
