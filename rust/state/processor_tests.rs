use super::*;
use crate::encode::{json, protobuf};
use crate::error::ErrorCode;
use crate::model::Payload;
use crate::providers::Provider;

fn processor() -> FeedProcessor {
    FeedProcessor::new(ProcessorConfig {
        epoch: Some("test-epoch".into()),
        ..ProcessorConfig::new(Provider::Itick)
    })
}

fn updates(p: &mut FeedProcessor, frames: &[&str]) -> Vec<MarketUpdate> {
    let mut out = Vec::new();
    for f in frames {
        p.process(f.as_bytes(), 1_731_689_500_000, &mut out).unwrap();
    }
    out.into_iter()
        .filter_map(|e| match e {
            Event::Update(u) => Some(u),
            Event::Control(_) => None,
        })
        .collect()
}

const QUOTE: &str = r#"{"code":1,"data":{"s":"AAPL.US","ld":225.215,"o":226.27,"h":226.92,"l":224.44,"t":1731689407000,"v":16742235,"tu":3774688301.452,"ts":0,"type":"quote"}}"#;
const TICK: &str =
    r#"{"code":1,"data":{"s":"AAPL$US","ld":225.2,"t":1731689407100,"v":100,"d":1,"type":"tick"}}"#;

#[test]
fn sequences_per_channel_from_one() {
    let mut p = processor();
    let us = updates(&mut p, &[QUOTE, TICK, QUOTE, TICK, TICK]);
    let got: Vec<(&str, u64)> = us.iter().map(|u| (&*u.channel, u.seq)).collect();
    assert_eq!(
        got,
        vec![
            ("AAPL$US:quote", 1),
            ("AAPL$US:tick", 1),
            ("AAPL$US:quote", 2),
            ("AAPL$US:tick", 2),
            ("AAPL$US:tick", 3)
        ]
    );
    assert_eq!(p.last_seq("AAPL$US", Kind::Tick), 3);
    assert_eq!(p.last_seq("MSFT$US", Kind::Tick), 0);
    assert!(us
        .iter()
        .all(|u| &*u.epoch == "test-epoch" && &*u.provider == "itick"));
}

#[test]
fn bad_frames_change_nothing() {
    let mut p = processor();
    let mut out = Vec::new();
    assert!(p.process(b"{oops", 0, &mut out).is_err());
    let too_big = vec![b' '; DEFAULT_MAX_FRAME_BYTES + 1];
    assert_eq!(
        p.process(&too_big, 0, &mut out).unwrap_err().code,
        ErrorCode::FrameTooLarge
    );
    assert!(out.is_empty());
    assert_eq!(p.counters(), (2, 0, 2));
    assert_eq!(updates(&mut p, &[QUOTE])[0].seq, 1);
}

#[test]
fn derived_fields_flow_through() {
    let mut p = processor();
    let us = updates(&mut p, &[QUOTE, TICK, TICK]);
    let Payload::Quote(q) = &us[0].payload else {
        panic!()
    };
    // No `p` from the provider: the reference is the day's first open, 226.27.
    assert_eq!((q.change, q.change_percent), (Some(-1.055), Some(-0.4663)));
    let Payload::Tick(t) = &us[2].payload else {
        panic!()
    };
    assert_eq!((t.cumulative_volume, t.change), (200.0, Some(-1.07)));
    // Event time comes from `t`; a frame without one gets the receive time.
    assert_eq!(us[0].event_time_ms, 1731689407000);
    let late = updates(
        &mut p,
        &[r#"{"code":1,"data":{"s":"AAPL$US","ld":1,"type":"tick"}}"#],
    );
    assert_eq!(late[0].event_time_ms, 1_731_689_500_000);
}

#[test]
fn epochs_differ_between_processors() {
    let a = FeedProcessor::new(ProcessorConfig::new(Provider::Itick));
    let b = FeedProcessor::new(ProcessorConfig::new(Provider::Itick));
    assert_ne!(a.epoch(), b.epoch());
}

#[test]
fn symbol_table_is_bounded() {
    let mut p = FeedProcessor::new(ProcessorConfig {
        max_symbols: 2,
        ..ProcessorConfig::new(Provider::Itick)
    });
    let mut out = Vec::new();
    for s in ["A$US", "B$US"] {
        let f = format!(r#"{{"code":1,"data":{{"s":"{s}","ld":1,"type":"tick"}}}}"#);
        p.process(f.as_bytes(), 1, &mut out).unwrap();
    }
    let f = r#"{"code":1,"data":{"s":"C$US","ld":1,"type":"tick"}}"#;
    assert_eq!(
        p.process(f.as_bytes(), 1, &mut out).unwrap_err().code,
        ErrorCode::InvalidSymbol
    );
    assert_eq!(p.symbol_count(), 2);
}

#[test]
fn seed_json_shape() {
    let mut p = processor();
    let us = updates(&mut p, &[QUOTE]);
    let text = String::from_utf8(json::encode_update(&us[0])).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"type":"stock_quote","data":{"symbol":"AAPL$US","lastDealPrice":225.215,"openPrice":226.27,"#,
            r#""highPrice":226.92,"lowPrice":224.44,"volume":16742235,"turnover":3774688301.452,"#,
            r#""tradeTime":1731689407000,"type":"quote","change":-1.055,"changePercent":-0.4663,"status":0,"#,
            r#""seq":1},"timestamp":1731689500000}"#
        )
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["symbol"], "AAPL$US");
}

#[test]
fn every_kind_encodes_to_valid_json_and_protobuf() {
    use prost::Message;
    let mut p = processor();
    let us = updates(
        &mut p,
        &[
            QUOTE,
            TICK,
            r#"{"code":1,"data":{"s":"AAPL.US","a":[{"po":1,"p":3034.01,"v":10.6023,"o":10.6023}],"b":[{"po":1,"p":3034,"v":20.9758}],"type":"depth"}}"#,
            r#"{"code":0,"msg":null,"data":{"s":"AAPL.US","t":2,"k":{"tu":157513,"c":3059.39,"t":1731660060000,"v":28,"h":3061.41,"l":3055.24,"o":3055.36}}}"#,
        ],
    );
    for u in &us {
        let v: serde_json::Value = serde_json::from_slice(&json::encode_update(u)).unwrap();
        assert_eq!(v["type"], "stock_quote");
        assert_eq!(v["data"]["seq"], 1);
        let back = protobuf::pb::Update::decode(protobuf::encode_update(u).as_slice()).unwrap();
        assert_eq!(back, protobuf::to_message(u));
        assert_eq!(back.symbol, "AAPL$US");
    }
    let v: serde_json::Value = serde_json::from_slice(&json::encode_update(&us[3])).unwrap();
    assert_eq!(v["data"]["klineCycle"], "kline@2");
    assert_eq!(v["data"]["type"], "kline");
    let v: serde_json::Value = serde_json::from_slice(&json::encode_update(&us[2])).unwrap();
    assert_eq!(v["data"]["ask"][0]["p"], 3034.01);
    assert!(v["data"]["bid"][0].get("o").is_none());
}

#[test]
fn implausible_updates_are_dropped_by_reason_before_numbering() {
    let mut p = processor();
    let bad = [
        r#"{"code":1,"data":{"s":"AAPL$US","ld":-5,"t":1731689407100,"v":100,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"AAPL$US","ld":225.2,"t":1731689407100,"v":-100,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"AAPL$US","ld":225.2,"t":1731689407100,"v":1.18e21,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"AAPL$US","ld":225.2,"t":99999999999999,"v":100,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"AAPL$US","ld":225.2,"t":315532800000,"v":100,"type":"tick"}}"#,
        r#"{"code":1,"data":{"s":"AAPL.US","ld":-1,"o":226.27,"t":1731689407000,"type":"quote"}}"#,
    ];
    assert!(updates(&mut p, &bad).is_empty());
    let dropped: Vec<(&str, u64)> = p.dropped().map(|(why, n)| (why.name(), n)).collect();
    assert_eq!(dropped, vec![("price", 2), ("volume", 2), ("time", 2)]);
    // Nothing was numbered for them: the next good update is seq 1, no hole.
    assert_eq!(updates(&mut p, &[TICK])[0].seq, 1);
    assert_eq!(p.symbol_count(), 1);
}

#[test]
fn a_marked_gap_skips_one_seq_on_that_channel_only() {
    let mut p = processor();
    updates(&mut p, &[TICK, TICK, QUOTE]);
    p.mark_gap("AAPL$US", Kind::Tick);
    p.mark_gap("MSFT$US", Kind::Tick); // never numbered: nothing to mark
    assert_eq!(p.last_seq("AAPL$US", Kind::Tick), 3);
    let next = updates(&mut p, &[TICK, QUOTE]);
    assert_eq!((next[0].seq, next[1].seq), (4, 2));
    assert_eq!(p.last_seq("MSFT$US", Kind::Tick), 0);
}

#[test]
fn a_released_symbol_comes_back_numbered_above_everything_before() {
    let mut p = processor();
    let msft = r#"{"code":1,"data":{"s":"MSFT$US","ld":400.1,"t":1731689407100,"v":5,"type":"tick"}}"#;
    updates(&mut p, &[TICK, TICK, msft, QUOTE]);
    assert_eq!(p.symbol_count(), 2);
    assert!(p.release("AAPL$US"));
    assert!(!p.release("AAPL$US"));
    assert_eq!((p.symbol_count(), p.released_count()), (1, 1));
    assert_eq!(p.last_seq("AAPL$US", Kind::Tick), 0);
    // MSFT moved into AAPL's place and carries on.
    assert_eq!(updates(&mut p, &[msft])[0].seq, 2);
    // 5 seqs given out so far: AAPL comes back above all of them, on every channel.
    let back = updates(&mut p, &[TICK, QUOTE]);
    assert_eq!((back[0].seq, back[1].seq), (6, 6));
    assert_eq!(p.symbol_count(), 2);
}

#[test]
fn a_backup_provider_carries_on_the_same_channels_numbering() {
    let mut p = processor();
    updates(&mut p, &[TICK, TICK]);
    let trades = br#"{"type":"trade","data":[{"s":"AAPL","p":225.3,"t":1731689407200,"v":10},{"s":"AAPL","p":-1,"t":1731689407201,"v":10},{"s":"MSFT","p":410.0,"t":1731689407300,"v":5}]}"#;
    let mut out = Vec::new();
    p.process_as(Provider::Finnhub, trades, 1_731_689_500_000, &mut out)
        .unwrap();
    let got: Vec<(String, u64, String)> = out
        .into_iter()
        .filter_map(|e| match e {
            Event::Update(u) => Some((u.channel.to_string(), u.seq, u.provider.to_string())),
            Event::Control(_) => None,
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("AAPL$US:tick".to_string(), 3, "finnhub".to_string()),
            ("MSFT$US:tick".to_string(), 1, "finnhub".to_string()),
        ]
    );
    assert_eq!(p.dropped().find(|(w, _)| w.name() == "price").unwrap().1, 1);
    // And back to the primary: still one numbering.
    assert_eq!(updates(&mut p, &[TICK])[0].seq, 4);
}

#[test]
fn a_providers_own_spelling_maps_to_the_gateways_symbol() {
    let mut p = processor();
    p.set_symbol_map(Provider::Finnhub, &[("0700.HK".into(), "700$HK".into())])
        .unwrap();
    let hk = r#"{"code":1,"data":{"s":"700.HK","ld":380.2,"t":1731689407100,"v":100,"type":"tick"}}"#;
    updates(&mut p, &[hk]);
    let trades = br#"{"type":"trade","data":[{"s":"0700.HK","p":380.4,"t":1731689407200,"v":100}]}"#;
    let mut out = Vec::new();
    p.process_as(Provider::Finnhub, trades, 1_731_689_500_000, &mut out)
        .unwrap();
    match &out[0] {
        Event::Update(u) => assert_eq!((&*u.channel, u.seq), ("700$HK:tick", 2)),
        Event::Control(_) => panic!("not an update"),
    }
    assert!(p
        .set_symbol_map(Provider::Finnhub, &[("X".into(), "not a symbol".into())])
        .is_err());
}
