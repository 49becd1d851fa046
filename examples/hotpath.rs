//! Ad-hoc timing of the core's stages on one frame, without Python:
//! `cargo run --release --example hotpath`.
use std::time::Instant;

use tickgate_core::encode;
use tickgate_core::providers::itick;
use tickgate_core::state::{Event, FeedProcessor, ProcessorConfig};

fn main() {
    let frames: [(&str, &[u8]); 2] = [
        ("tick", br#"{"code":1,"data":{"s":"SYM5.US","ld":123.45,"t":1731689407000,"v":321,"d":1,"te":0,"type":"tick"}}"#),
        ("kline", br#"{"code":1,"data":{"s":"600021.SH","o":28.07,"h":28.13,"l":28.01,"c":28.07,"v":6465,"tu":140350.0,"t":1731689400000,"type":"kline@1"}}"#),
    ];
    let n = 1_000_000u32;
    for (name, f) in frames {
        let mut sym = String::new();
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(itick::decode(std::hint::black_box(f), &mut sym).is_ok());
        }
        let decode = t.elapsed() / n;
        let mut p = FeedProcessor::new(ProcessorConfig::default());
        let mut out = Vec::new();
        let t = Instant::now();
        for _ in 0..n {
            out.clear();
            p.process(f, 1, &mut out).unwrap();
        }
        let process = t.elapsed() / n;
        let Event::Update(u) = &out[0] else { panic!() };
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(encode::json::encode_update_framed(std::hint::black_box(u)));
        }
        let json = t.elapsed() / n;
        println!("{name}: decode {decode:?}, decode+sequence {process:?}, json framed {json:?}");
    }
}
