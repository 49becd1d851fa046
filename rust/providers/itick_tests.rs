//! Every iTick frame form from docs/providers.md, plus garbage. Each also checks that the
//! scanner fast path takes it and agrees with serde (`same_as_serde`; more in scan_tests).

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

pub(super) fn market(frame: &str) -> (String, Observation) {
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

/// Asserts that the fast path (the scanner, classified as `decode` would), when it answers,
/// answers exactly as the serde path, and so does `decode`; returns whether it answered.
/// Results compare as `Debug` text, which tells apart every f64 that matters (`-0.0`, last
/// digits), unlike `==` on floats.
pub(super) fn same_as_serde(frame: &[u8]) -> bool {
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
