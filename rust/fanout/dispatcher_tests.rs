//! Dispatcher behaviour without sockets or sleeps: time is a number passed in, and what a
//! connection would be sent is what `flush` hands back.

use std::sync::Arc;

use prost::Message as _;

use super::*;
use crate::encode::protobuf::pb;
use crate::model::{MarketUpdate, Payload, Quote, Tick, TradingStatus};

/// A test update on `symbol:kind` (tick or quote) numbered `seq`; other modules' tests use it too.
pub(crate) fn update(symbol: &str, kind: &str, seq: u64) -> Arc<EncodedUpdate> {
    let payload = match kind {
        "tick" => Payload::Tick(Tick {
            price: 100.0 + seq as f64,
            volume: 10.0,
            direction: Default::default(),
            session: Default::default(),
            turnover: None,
            status: None,
            cumulative_volume: 10.0 * seq as f64,
            change: None,
            change_percent: None,
        }),
        _ => Payload::Quote(Quote {
            last: 100.0 + seq as f64,
            open: None,
            high: None,
            low: None,
            prev_close: None,
            change: None,
            change_percent: None,
            volume: None,
            turnover: None,
            status: TradingStatus::Normal,
        }),
    };
    Arc::new(EncodedUpdate::new(MarketUpdate {
        symbol: symbol.into(),
        channel: format!("{symbol}:{kind}").into(),
        seq,
        epoch: "e".into(),
        provider: "test".into(),
        event_time_ms: 1_000 + seq as i64,
        recv_time_ms: 2_000 + seq as i64,
        payload,
    }))
}

fn dispatcher() -> Dispatcher {
    Dispatcher::new(
        DispatcherLimits {
            soft_cap_bytes: 4096,
            tick_cap: 3,
            lag_deadline_ms: 1_000,
            wheel_tick_ms: 10,
            min_interval_ms: 50,
            max_interval_ms: 60_000,
        },
        None,
    )
    .unwrap()
}

fn flush(d: &mut Dispatcher, now: i64) -> Vec<(ConnId, Vec<u8>)> {
    let mut out = Vec::new();
    d.flush(now, &mut out);
    out.into_iter().map(|(id, o)| (id, o.to_vec())).collect()
}

/// Splits a buffer of unmasked server frames into payloads.
fn frames(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (len, at) = match buf[1] {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        out.push(buf[at..at + len].to_vec());
        buf = &buf[at + len..];
    }
    out
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn immediate_mode_coalesces_one_buffer_per_connection_per_flush() {
    let mut d = dispatcher();
    let a = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    let b = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    assert_eq!(d.subscribe(a, &["A$US:quote", "B$US:quote"]).len(), 2);
    assert_eq!(d.subscribe(b, &["A$US:quote"]).len(), 0, "not a first edge");
    assert_eq!(d.publish(&update("A$US", "quote", 1)), 2);
    assert_eq!(d.publish(&update("B$US", "quote", 1)), 1);
    assert_eq!(d.publish(&update("C$US", "quote", 1)), 0);
    let out = flush(&mut d, 0);
    assert_eq!(out.len(), 2);
    let seqs = |buf: &[u8]| -> Vec<String> {
        frames(buf)
            .iter()
            .map(|f| json(f)["data"]["symbol"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(seqs(&out[0].1), vec!["A$US", "B$US"]);
    assert_eq!(out[0].0, a);
    assert_eq!(seqs(&out[1].1), vec!["A$US"]);
    assert!(flush(&mut d, 1).is_empty(), "nothing twice");
    assert_eq!(d.stats().deliveries, 3);
}

#[test]
fn each_format_gets_its_frame() {
    let mut d = dispatcher();
    let ids: Vec<ConnId> = Format::ALL
        .iter()
        .map(|f| d.connect(*f, Mode::Immediate, 0).unwrap())
        .collect();
    for id in &ids {
        d.subscribe(*id, &["A$US:quote"]);
    }
    let u = update("A$US", "quote", 5);
    d.publish(&u);
    let out = flush(&mut d, 0);
    assert_eq!(json(&frames(&out[0].1)[0])["data"]["seq"], 5);
    let msg = pb::ServerMessage::decode(frames(&out[1].1)[0].as_slice()).unwrap();
    assert!(matches!(msg.message, Some(pb::server_message::Message::Update(u)) if u.seq == 5));
    let raw = zstd::bulk::decompress(&frames(&out[2].1)[0], 1 << 20).unwrap();
    assert_eq!(raw, u.proto().message());
}

#[test]
fn batch_mode_conflates_quotes_keeps_ticks_and_counts_drops() {
    let mut d = dispatcher();
    let c = d
        .connect(Format::Json, Mode::Batch { interval_ms: 500 }, 0)
        .unwrap();
    d.subscribe(c, &["A$US:quote", "A$US:tick", "B$US:quote"]);
    for seq in 1..=4 {
        d.publish(&update("A$US", "quote", seq));
        d.publish(&update("A$US", "tick", seq));
    }
    d.publish(&update("A$US", "tick", 5));
    d.publish(&update("B$US", "quote", 9));
    assert!(flush(&mut d, 10).is_empty(), "nothing before the deadline");
    let out = flush(&mut d, 1_000);
    assert_eq!(out.len(), 1);
    let batch = json(&frames(&out[0].1)[0]);
    assert_eq!(batch["type"], "batch");
    assert_eq!(batch["timestamp"], 1_000);
    let got: Vec<(String, String, u64)> = batch["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["symbol"].as_str().unwrap().into(),
                u["type"].as_str().unwrap().into(),
                u["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("A$US", "quote", 4),
        ("B$US", "quote", 9),
        ("A$US", "tick", 3),
        ("A$US", "tick", 4),
        ("A$US", "tick", 5),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(s, t, q)| (s.to_string(), t.to_string(), *q))
            .collect::<Vec<_>>()
    );
    assert_eq!(batch["dropped_ticks"], 2);
    // Each entry is exactly the immediate push's "data" object.
    assert_eq!(
        batch["updates"][1],
        json(update("B$US", "quote", 9).json_payload())["data"]
    );
    assert_eq!(d.stats().conflated, 3);
    assert_eq!(d.stats().ticks_dropped, 2);
    assert!(flush(&mut d, 2_000).is_empty(), "nothing pending, no frame");
}

#[test]
fn batch_deadlines_follow_the_interval() {
    let mut d = dispatcher();
    let c = d
        .connect(Format::Json, Mode::Batch { interval_ms: 200 }, 0)
        .unwrap();
    d.subscribe(c, &["A$US:quote"]);
    let mut sent_at = Vec::new();
    let mut seq = 0;
    for now in (0..3_000).step_by(10) {
        seq += 1;
        d.publish(&update("A$US", "quote", seq));
        if !flush(&mut d, now).is_empty() {
            sent_at.push(now);
        }
    }
    let gaps: Vec<i64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 12, "{sent_at:?}");
    assert!(gaps[1..].iter().all(|g| *g == 200), "{gaps:?}");
}

#[test]
fn same_set_and_interval_share_one_encoded_batch() {
    let mut d = dispatcher();
    let members: Vec<ConnId> = (0..5)
        .map(|_| {
            let c = d
                .connect(Format::ProtoZstd, Mode::Batch { interval_ms: 500 }, 0)
                .unwrap();
            d.subscribe(c, &["A$US:quote", "B$US:quote"]);
            c
        })
        .collect();
    let other = d
        .connect(Format::ProtoZstd, Mode::Batch { interval_ms: 500 }, 0)
        .unwrap();
    d.subscribe(other, &["A$US:quote"]);
    // First deadlines follow the empty set's grid; from the second on, the set's grid.
    flush(&mut d, 1_000);
    for seq in 1..=3 {
        d.publish(&update("A$US", "quote", seq));
        d.publish(&update("B$US", "quote", seq));
    }
    let mut got: Vec<(ConnId, Vec<u8>)> = Vec::new();
    for now in (1_000..2_200).step_by(10) {
        got.extend(flush(&mut d, now));
    }
    let group: Vec<&Vec<u8>> = got
        .iter()
        .filter(|(id, _)| members.contains(id))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(group.len(), 5);
    assert!(
        group.iter().all(|b| *b == group[0]),
        "identical bytes for every member"
    );
    assert_eq!(
        d.stats().batch_encodes,
        2,
        "one for the group, one for the other set"
    );
    let raw = zstd::bulk::decompress(&frames(group[0])[0], 1 << 20).unwrap();
    let Some(pb::server_message::Message::Batch(b)) =
        pb::ServerMessage::decode(raw.as_slice()).unwrap().message
    else {
        panic!("not a batch")
    };
    assert_eq!(
        b.updates
            .iter()
            .map(|u| (u.symbol.as_str(), u.seq))
            .collect::<Vec<_>>(),
        vec![("A$US", 3), ("B$US", 3)]
    );
}

#[test]
fn slow_reader_is_conflated_then_caught_up_then_reported_lagging() {
    let mut d = dispatcher();
    let slow = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    let fast = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    for c in [slow, fast] {
        d.subscribe(c, &["A$US:quote", "A$US:tick"]);
    }
    d.set_paused(slow, true, 100);
    for seq in 1..=10 {
        d.publish(&update("A$US", "quote", seq));
        d.publish(&update("A$US", "tick", seq));
    }
    let out = flush(&mut d, 200);
    assert_eq!(out.len(), 1, "only the fast one");
    assert_eq!(frames(&out[0].1).len(), 20);
    assert!(d.lagging(1_099).is_empty());
    d.set_paused(slow, false, 500);
    let out = flush(&mut d, 500);
    let got: Vec<u64> = frames(&out[0].1)
        .iter()
        .map(|f| json(f)["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![10, 8, 9, 10],
        "latest quote, then the last tick_cap ticks"
    );
    assert_eq!(d.stats().ticks_dropped, 7);
    d.set_paused(slow, true, 600);
    assert_eq!(d.lagging(1_600), vec![slow]);
    assert!(d.disconnect(slow).is_empty(), "fast still holds both channels");
    assert!(d.lagging(1_600).is_empty());
}

#[test]
fn outbox_is_bounded_by_the_soft_cap_within_one_turn() {
    let mut d = dispatcher();
    let c = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    d.subscribe(c, &["A$US:quote"]);
    for seq in 1..=10_000 {
        d.publish(&update("A$US", "quote", seq));
    }
    let out = flush(&mut d, 0);
    let fs = frames(&out[0].1);
    assert!(out[0].1.len() < 4096 + 4096, "{}", out[0].1.len());
    assert_eq!(
        json(fs.last().unwrap())["data"]["seq"],
        10_000,
        "the latest is never lost"
    );
}

#[test]
fn unsubscribe_drops_pending_and_reports_last_edges() {
    let mut d = dispatcher();
    let c = d
        .connect(Format::Json, Mode::Batch { interval_ms: 100 }, 0)
        .unwrap();
    d.subscribe(c, &["A$US:quote", "B$US:quote"]);
    d.publish(&update("A$US", "quote", 1));
    d.publish(&update("B$US", "quote", 1));
    let last = d.unsubscribe(c, &["A$US:quote"]);
    assert_eq!(last.iter().map(|s| &**s).collect::<Vec<_>>(), vec!["A$US:quote"]);
    let out: Vec<_> = (0..30).flat_map(|i| flush(&mut d, i * 10)).collect();
    let batch = json(&frames(&out[0].1)[0]);
    assert_eq!(batch["updates"].as_array().unwrap().len(), 1);
    assert_eq!(batch["updates"][0]["symbol"], "B$US");
}

#[test]
fn set_mode_both_ways_and_interval_limits() {
    let mut d = dispatcher();
    let c = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    d.subscribe(c, &["A$US:quote"]);
    assert_eq!(
        d.set_mode(c, Mode::Batch { interval_ms: 10 }, 0)
            .unwrap_err()
            .code,
        ErrorCode::InvalidMode
    );
    d.set_mode(c, Mode::Batch { interval_ms: 100 }, 0).unwrap();
    d.publish(&update("A$US", "quote", 1));
    d.publish(&update("A$US", "quote", 2));
    d.set_mode(c, Mode::Immediate, 20).unwrap();
    let out = flush(&mut d, 20);
    let fs = frames(&out[0].1);
    assert_eq!(fs.len(), 1, "pending conflated quote goes out as a push");
    assert_eq!(json(&fs[0])["type"], "stock_quote");
    assert_eq!(json(&fs[0])["data"]["seq"], 2);
    // The old batch timer is stale now.
    assert!((0..50).all(|i| flush(&mut d, 20 + i * 10).is_empty()));
}

#[test]
fn provider_refusal_drops_channels_from_holders() {
    let mut d = dispatcher();
    let a = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    let b = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    d.subscribe(a, &["X$US:quote", "Y$US:quote"]);
    d.subscribe(b, &["X$US:quote"]);
    let dropped = d.drop_channels(&["X$US:quote"]);
    assert_eq!(dropped.len(), 2);
    assert_eq!(&*dropped[0].1[0], "X$US:quote");
    assert_eq!(d.index().receiver_count("X$US:quote"), 0);
    assert_eq!(d.index().channels_of(a).len(), 1);
}

#[test]
fn delivered_is_what_went_out_per_channel() {
    let mut d = dispatcher();
    let c = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    d.subscribe(c, &["A$US:quote", "B$US:tick", "C$US:quote"]);
    d.publish(&update("A$US", "quote", 4));
    d.publish(&update("B$US", "tick", 7));
    assert!(d.delivered(c).is_empty(), "frames still in the outbox: unknown");
    flush(&mut d, 0);
    let names = |v: Vec<(Arc<str>, u64)>| v.into_iter().map(|(c, s)| (c.to_string(), s)).collect::<Vec<_>>();
    // C never had an update: not listed.
    assert_eq!(
        names(d.delivered(c)),
        vec![("A$US:quote".into(), 4), ("B$US:tick".into(), 7)]
    );
    // A replay or snapshot written for it counts too.
    d.frames_for(c, &[update("C$US", "quote", 9)], Marked::Snapshot, 0)
        .unwrap();
    assert_eq!(names(d.delivered(c))[2], ("C$US:quote".into(), 9));
    // In batch mode, a channel with something pending is left out until the batch goes.
    d.set_mode(c, Mode::Batch { interval_ms: 100 }, 0).unwrap();
    d.publish(&update("A$US", "quote", 5));
    assert_eq!(
        names(d.delivered(c)),
        vec![("B$US:tick".into(), 7), ("C$US:quote".into(), 9)]
    );
    let out: Vec<_> = (0..30).flat_map(|i| flush(&mut d, i * 10)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(names(d.delivered(c))[0], ("A$US:quote".into(), 5));
    assert!(d.delivered(c + 100).is_empty());
}

#[test]
fn snapshots_and_refreshes_are_marked() {
    let mut d = dispatcher();
    let c = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    let p = d.connect(Format::Proto, Mode::Immediate, 0).unwrap();
    let u = [update("A$US", "quote", 3)];
    let snap = json(&frames(&d.frames_for(c, &u, Marked::Snapshot, 0).unwrap())[0]);
    assert_eq!(
        (snap["snapshot"].as_bool(), snap.get("refresh")),
        (Some(true), None)
    );
    let fresh = json(&frames(&d.frames_for(c, &u, Marked::Refresh, 0).unwrap())[0]);
    assert_eq!(
        (fresh["snapshot"].as_bool(), fresh["refresh"].as_bool()),
        (Some(true), Some(true))
    );
    let missed = json(&frames(&d.frames_for(c, &u, Marked::Missed, 0).unwrap())[0]);
    assert!(missed.get("snapshot").is_none() && missed["data"]["seq"] == 3);
    let bin = frames(&d.frames_for(p, &u, Marked::Refresh, 0).unwrap());
    let msg = pb::ServerMessage::decode(bin[0].as_slice()).unwrap();
    match msg.message {
        Some(pb::server_message::Message::Refresh(up)) => assert_eq!(up.seq, 3),
        other => panic!("not a refresh: {other:?}"),
    }
}

#[test]
fn shedding_leaves_out_depth_and_klines_for_immediate_clients_then_everything() {
    let mut d = dispatcher();
    let imm = d.connect(Format::Json, Mode::Immediate, 0).unwrap();
    let bat = d
        .connect(Format::Json, Mode::Batch { interval_ms: 100 }, 0)
        .unwrap();
    let kline = |seq: u64| {
        let mut u = update("A$US", "quote", seq);
        let m = &mut Arc::get_mut(&mut u).unwrap().update;
        m.channel = "A$US:kline@1".into();
        m.payload = Payload::Kline(crate::model::Kline {
            period: 1,
            open_time_ms: 0,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: None,
            turnover: None,
        });
        u
    };
    d.subscribe(imm, &["A$US:quote", "A$US:kline@1"]);
    d.subscribe(bat, &["A$US:kline@1"]);
    d.set_shedding(1);
    d.publish(&kline(1));
    d.publish(&update("A$US", "quote", 1));
    let out = flush(&mut d, 0);
    let imm_frames: Vec<_> = out
        .iter()
        .filter(|(c, _)| *c == imm)
        .flat_map(|(_, o)| frames(o))
        .collect();
    assert_eq!(imm_frames.len(), 1, "the quote only");
    assert_eq!(json(&imm_frames[0])["type"], "stock_quote");
    assert_eq!(d.stats().shed, 1);
    // A batch-mode client still gets its klines (conflated already).
    let later: Vec<_> = (1..30).flat_map(|i| flush(&mut d, i * 10)).collect();
    assert!(later.iter().any(|(c, _)| *c == bat));
    d.set_shedding(3);
    assert_eq!(d.publish(&update("A$US", "quote", 2)), 1);
    assert!(flush(&mut d, 400).is_empty());
    d.set_shedding(0);
    d.publish(&update("A$US", "quote", 3));
    assert_eq!(flush(&mut d, 500).len(), 1);
}
