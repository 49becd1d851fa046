//! Ad-hoc timing of the core's stages on one frame, without Python:
//! `cargo run --release --example hotpath`.
use std::time::{Duration, Instant};

use tickgate_core::encode;
use tickgate_core::providers::itick;
use tickgate_core::state::{Event, FeedProcessor, ProcessorConfig};

fn main() {
    let frames: [(&str, &[u8]); 4] = [
        ("tick", br#"{"code":1,"data":{"s":"SYM5.US","ld":123.45,"t":1731689407000,"v":321,"d":1,"te":0,"type":"tick"}}"#),
        ("quote", br#"{"code":1,"data":{"s":"AAPL.US","ld":225.215,"o":226.27,"h":226.92,"l":224.44,"t":1731689407000,"v":16742235,"tu":3774688301.452,"ts":0,"type":"quote"}}"#),
        ("depth", br#"{"code":1,"data":{"s":"AAPL.US","a":[{"po":1,"p":3034.01,"v":10.6023,"o":10.6023},{"po":2,"p":3034.5,"v":1,"o":3}],"b":[{"po":1,"p":3034,"v":20.9758,"o":20.9758}],"type":"depth"}}"#),
        ("kline", br#"{"code":1,"data":{"s":"600021.SH","o":28.07,"h":28.13,"l":28.01,"c":28.07,"v":6465,"tu":140350.0,"t":1731689400000,"type":"kline@1"}}"#),
    ];
    let n = 1_000_000u32;
    for (name, f) in frames {
        let mut sym = String::new();
        let decode = best_of_5(n, || {
            std::hint::black_box(itick::decode(std::hint::black_box(f), &mut sym).is_ok());
        });
        let mut p = FeedProcessor::new(ProcessorConfig::new(tickgate_core::providers::Provider::Itick));
        let mut out = Vec::new();
        let process = best_of_5(n, || {
            out.clear();
            p.process(f, 1, &mut out).unwrap();
        });
        let Event::Update(u) = &out[0] else { panic!() };
        let json = best_of_5(n, || {
            std::hint::black_box(encode::json::encode_update_framed(std::hint::black_box(u)));
        });
        println!("{name}: decode {decode:?}, decode+sequence {process:?}, json framed {json:?}");
    }
}

/// Time per call: the best of five rounds of `n / 5` calls, so a busy machine (other
/// processes on few cores) disturbs the figure less than one long average.
fn best_of_5(n: u32, mut f: impl FnMut()) -> Duration {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n / 5 {
                f();
            }
            t.elapsed() / (n / 5)
        })
        .min()
        .unwrap()
}
