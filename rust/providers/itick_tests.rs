//! Every iTick frame form from docs/providers.md, plus garbage; and the scanner fast path
//! against the serde path on all of them and on generated and mutated frames.

use proptest::prelude::*;

use super::*;
use crate::providers::ControlKind;

/// Every frame iTick sends must take the fast path (that is the speed) and agree with serde.
fn control(frame: &str) -> Control {
    assert!(same_as_serde(frame.as_bytes()), "fast path declined {frame}");
    match decode(frame.as_bytes(), &mut String::new()) {
        Ok(ItickFrame::Control(c)) => c,
        Ok(ItickFrame::Market(m)) => panic!("expected control, got {m:?}"),
        Err(e) => panic!("expected control, got {e}"),
    }
}

fn market(frame: &str) -> (String, Observation) {
    assert!(same_as_serde(frame.as_bytes()), "fast path declined {frame}");
    let mut sym = String::new();
    match decode(frame.as_bytes(), &mut sym) {
        Ok(ItickFrame::Market(m)) => (sym, m),
        Ok(ItickFrame::Control(c)) => panic!("expected market, got {c:?}"),
        Err(e) => panic!("expected market, got {e}"),
    }
}

fn error(frame: &[u8]) -> ErrorCode {
    same_as_serde(frame);
    match decode(frame, &mut String::new()) {
        Err(e) => e.code,
        Ok(_) => panic!("expected an error for {:?}", String::from_utf8_lossy(frame)),
    }
}

#[test]
fn control_frames() {
    let c = control(r#"{"code":1,"msg":"Connected Successfully"}"#);
    assert_eq!(
        (c.kind, c.ok, c.message.as_str()),
        (ControlKind::Connected, true, "Connected Successfully")
    );

    let c = control(r#"{"code":1,"resAc":"auth","msg":"authenticated","data":{"params":"tok"}}"#);
    assert_eq!(
        (c.kind, c.ok, c.params.as_deref()),
        (ControlKind::Auth, true, Some("tok"))
    );

    let c = control(r#"{"code":0,"resAc":"auth","msg":"auth failed"}"#);
    assert_eq!(
        (c.kind, c.ok, c.message.as_str()),
        (ControlKind::Auth, false, "auth failed")
    );

    let c = control(r#"{"code":1,"resAc":"subscribe","msg":"subscribe Successfully"}"#);
    assert_eq!((c.kind, c.ok), (ControlKind::Subscribe, true));

    let c = control(r#"{"code":0,"resAc":"subscribe","msg":"exceeding the maximum subscription limit"}"#);
    assert_eq!((c.kind, c.ok), (ControlKind::Subscribe, false));
    assert!(c.message.contains("maximum subscription limit"));

    let c = control(r#"{"code":1,"resAc":"unsubscribe","msg":"unsubscribe Successfully"}"#);
    assert_eq!(c.kind, ControlKind::Unsubscribe);

    for pong in [
        r#"{"resAc":"pong","data":{"params":"1731688569840"}}"#,
        r#"{"resAc":"pong","data":{"params":1731688569840}}"#,
    ] {
        let c = control(pong);
        assert_eq!(
            (c.kind, c.ok, c.params.as_deref()),
            (ControlKind::Pong, true, Some("1731688569840"))
        );
    }

    let c = control(r#"{"code":0,"resAc":"bogus","msg":"cannot be resolved action"}"#);
    assert_eq!(
        (c.kind, c.ok, c.action.as_str()),
        (ControlKind::Notice, false, "bogus")
    );
    let c = control(r#"{"code":0,"msg":"invalid message"}"#);
    assert_eq!((c.kind, c.ok), (ControlKind::Notice, false));
}

#[test]
fn quote_frame() {
    let (sym, m) = market(
        r#"{"code":1,"data":{"s":"AAPL.US","ld":225.215,"o":226.27,"h":226.92,"l":224.44,"t":1731689407000,
        "v":16742235,"tu":3774688301.452,"ts":0,"type":"quote"}}"#,
    );
    assert_eq!(sym, "AAPL$US");
    assert_eq!(m.event_time_ms, Some(1731689407000));
    let Payload::Quote(q) = m.payload else { panic!() };
    assert_eq!(q.last, 225.215);
    assert_eq!(
        (q.open, q.high, q.low),
        (Some(226.27), Some(226.92), Some(224.44))
    );
    assert_eq!((q.volume, q.turnover), (Some(16742235.0), Some(3774688301.452)));
    assert_eq!((q.prev_close, q.change, q.change_percent), (None, None, None));
    assert_eq!(q.status, TradingStatus::Normal);
}

#[test]
fn quote_with_provider_change_and_status() {
    let (_, m) = market(
        r#"{"code":1,"data":{"s":"700$HK","ld":"380.2","p":378,"ch":2.2,"chp":0.58,"ts":3,"type":"quote"}}"#,
    );
    let Payload::Quote(q) = m.payload else { panic!() };
    assert_eq!(
        (q.last, q.prev_close, q.change, q.change_percent),
        (380.2, Some(378.0), Some(2.2), Some(0.58))
    );
    assert_eq!(q.status, TradingStatus::CircuitBreaker);
    assert_eq!(m.event_time_ms, None);
}

#[test]
fn tick_frame() {
    let (sym, m) = market(
        r#"{"code":1,"data":{"s":"aapl$us","ld":225.2,"t":1731689407000,"v":100,"d":2,"te":1,"type":"tick"}}"#,
    );
    assert_eq!(sym, "AAPL$US");
    let Payload::Tick(t) = m.payload else { panic!() };
    assert_eq!(
        (t.price, t.volume, t.direction, t.session),
        (225.2, 100.0, Direction::Buy, Session::PreMarket)
    );
    // Crypto ticks carry turnover and status too.
    let (_, m) = market(
        r#"{"code":1,"data":{"s":"BTCUSDT$BA","ld":97000.5,"v":0.0123,"tu":1193.1,"ts":0,"type":"tick"}}"#,
    );
    let Payload::Tick(t) = m.payload else { panic!() };
    assert_eq!(
        (t.turnover, t.status),
        (Some(1193.1), Some(TradingStatus::Normal))
    );
}

#[test]
fn depth_frame() {
    let (_, m) = market(
        r#"{"code":1,"data":{"s":"AAPL.US","a":[{"po":1,"p":3034.01,"v":10.6023,"o":10.6023},{"po":2,"p":3034.5,"v":1,"o":3}],
        "b":[{"po":1,"p":3034,"v":20.9758,"o":20.9758}],"type":"depth"}}"#,
    );
    let Payload::Depth(d) = m.payload else { panic!() };
    assert_eq!(d.asks.len(), 2);
    assert_eq!(
        d.asks[1],
        DepthLevel {
            position: 2,
            price: 3034.5,
            volume: 1.0,
            orders: Some(3.0)
        }
    );
    assert_eq!(d.bids[0].price, 3034.0);
    // Levels without `po` are numbered by position.
    let (_, m) = market(r#"{"code":1,"data":{"s":"X$US","b":[{"p":1},{"p":0.5}],"type":"depth"}}"#);
    let Payload::Depth(d) = m.payload else { panic!() };
    assert_eq!((d.bids[0].position, d.bids[1].position, d.asks.len()), (1, 2, 0));
}

#[test]
fn both_kline_forms() {
    let (_, flat) = market(
        r#"{"code":1,"data":{"s":"AAPL.US","o":3055.36,"h":3061.41,"l":3055.24,"c":3059.39,"v":28,"tu":157513,"t":1731660060000,"type":"kline@1"}}"#,
    );
    let (sym, nested) = market(
        r#"{"code":0,"msg":null,"data":{"s":"AAPL.US","t":1,"k":{"tu":157513,"c":3059.39,"t":1731660060000,"v":28,"h":3061.41,"l":3055.24,"o":3055.36}}}"#,
    );
    assert_eq!(sym, "AAPL$US");
    assert_eq!(flat, nested);
    let Payload::Kline(k) = flat.payload else { panic!() };
    assert_eq!((k.period, k.open_time_ms, k.close), (1, 1731660060000, 3059.39));
    let (_, m) = market(
        r#"{"code":1,"data":{"s":"AAPL$US","o":1,"h":1,"l":1,"c":1,"t":1731660060000,"type":"kline@8"}}"#,
    );
    assert_eq!(m.payload.kind(), Kind::Kline(8));
}

#[test]
fn separate_region_field() {
    let (sym, _) = market(r#"{"code":1,"data":{"s":"600519","r":"SH","ld":1500,"type":"tick"}}"#);
    assert_eq!(sym, "600519$SH");
}

#[test]
fn bad_frames_get_named_errors() {
    use ErrorCode::*;
    let cases: &[(&[u8], ErrorCode)] = &[
        (b"", InvalidJson),
        (b"{", InvalidJson),
        (b"not json", InvalidJson),
        (b"\xff\xfe{}", InvalidJson),
        (br#"{"code":1,"data":{"s":"\xff","type":"tick"}}"#, InvalidJson),
        (b"[]", InvalidFrame),
        (b"{}", InvalidFrame),
        (b"42", InvalidFrame),
        (br#"{"code":1,"data":"x"}"#, InvalidFrame),
        (br#"{"code":1,"data":{"s":"AAPL$US","ld":1}}"#, InvalidFrame),
        (br#"{"code":1,"data":{"ld":1,"type":"tick"}}"#, InvalidField),
        (
            br#"{"code":1,"data":{"s":"AAPL","ld":1,"type":"tick"}}"#,
            InvalidSymbol,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","ld":1,"type":"trade"}}"#,
            InvalidType,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","type":"quote"}}"#,
            InvalidField,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","ld":"abc","type":"quote"}}"#,
            InvalidFrame,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","ld":[1],"type":"quote"}}"#,
            InvalidFrame,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","type":"depth"}}"#,
            InvalidField,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","b":[{"v":1}],"type":"depth"}}"#,
            InvalidField,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","o":1,"h":1,"l":1,"c":1,"type":"kline@1"}}"#,
            InvalidField,
        ),
        (
            br#"{"code":0,"data":{"s":"AAPL$US","t":12,"k":{"o":1,"h":1,"l":1,"c":1,"t":1731660060000}}}"#,
            InvalidField,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","ld":1e999,"type":"tick"}}"#,
            InvalidJson,
        ),
        (
            br#"{"code":1,"data":{"s":"AAPL$US","ld":"NaN","type":"tick"}}"#,
            InvalidField,
        ),
    ];
    for (frame, want) in cases {
        assert_eq!(error(frame), *want, "{:?}", String::from_utf8_lossy(frame));
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!(
        "{{\"code\":1,\"data\":{{\"s\":\"A$US\",\"x\":{}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // serde_json's recursion limit stops it; the point is an error, not a stack overflow.
    assert!(matches!(
        error(deep.as_bytes()),
        ErrorCode::InvalidJson | ErrorCode::InvalidFrame
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &mut String::new());
    }

    #[test]
    fn mutated_frames_never_panic(cut in 0usize..200, flip in 0usize..200, byte in any::<u8>()) {
        let mut frame = br#"{"code":1,"data":{"s":"AAPL.US","a":[{"po":1,"p":3034.01,"v":10.6,"o":1}],"b":[{"po":1,"p":3034,"v":2,"o":2}],"ld":1.5,"t":1731689407000,"type":"depth"}}"#.to_vec();
        let n = frame.len();
        frame[flip % n] = byte;
        frame.truncate(n - cut % n);
        let _ = decode(&frame, &mut String::new());
    }

    #[test]
    fn random_json_values_never_panic(
        s in "[A-Za-z0-9$.]{0,12}",
        kind in prop_oneof![Just("tick"), Just("quote"), Just("depth"), Just("kline@3"), Just("x")],
        ld in prop_oneof![Just("1.5".to_string()), Just("\"2\"".to_string()), Just("null".to_string()), Just("-0".to_string()), Just("{}".to_string())],
        t in any::<i64>(),
    ) {
        let frame = format!(r#"{{"code":1,"data":{{"s":"{s}","ld":{ld},"o":1,"h":2,"l":0.5,"c":1,"t":{t},"a":[],"type":"{kind}"}}}}"#);
        let _ = decode(frame.as_bytes(), &mut String::new());
    }
}

// ---- The scanner fast path against the serde reference ----------------------------------

/// Asserts that the fast path (the scanner, classified as `decode` would), when it answers,
/// answers exactly as the serde path, and so does `decode`; returns whether it answered.
/// Results compare as `Debug` text, which tells apart every f64 that matters (`-0.0`, last
/// digits), unlike `==` on floats.
fn same_as_serde(frame: &[u8]) -> bool {
    let [mut sym, mut want_sym, mut fast_sym] = [String::new(), String::new(), String::new()];
    let want = (format!("{:?}", decode_serde(frame, &mut want_sym)), want_sym);
    let shown = String::from_utf8_lossy(frame);
    assert_eq!(
        (format!("{:?}", decode(frame, &mut sym)), sym),
        want,
        "decode differs on {shown}"
    );
    let mut parsed = Frame::default();
    let Some(()) = scan::frame(frame, &mut parsed) else {
        return false;
    };
    let got = format!("{:?}", classify(&mut parsed, &mut fast_sym));
    assert_eq!((got, fast_sym), want, "fast path differs on {shown}");
    true
}

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
