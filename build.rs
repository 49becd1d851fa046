//! Compiles the wire schema in proto/ with protox (pure Rust), so building needs no `protoc`.
//! The encoded FileDescriptorSet is also kept and exported, letting Python build message
//! classes from the very schema the core encodes with.
use std::{env, fs, path::PathBuf};

use prost::Message as _;

fn main() {
    let proto = "proto/tickgate/v1/market_data.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"]).expect("proto/ schema must compile");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::write(out.join("tickgate_v1_descriptor.bin"), fds.encode_to_vec()).unwrap();
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost code generation");
}
