//! `EncodedUpdate`: one sequenced update and its encodings, each made at most once, shared by
//! every receiver, every batch and the Python view of the update.

use std::ops::Range;
use std::sync::OnceLock;

use super::format::{Compressor, Format};
use super::json;
use super::protobuf::{self, ProtoEncoded};
use super::wsframe::{frame, Framed, Opcode};
use crate::model::{Kind, MarketUpdate};

pub struct EncodedUpdate {
    pub update: MarketUpdate,
    json: OnceLock<(Framed, Range<usize>)>,
    proto: OnceLock<ProtoEncoded>,
    zstd: OnceLock<Vec<u8>>,
}

impl EncodedUpdate {
    pub fn new(update: MarketUpdate) -> EncodedUpdate {
        EncodedUpdate {
            update,
            json: OnceLock::new(),
            proto: OnceLock::new(),
            zstd: OnceLock::new(),
        }
    }

    /// An update whose JSON and Protobuf encodings were made elsewhere (the ingest process;
    /// see `encode::bus`): nothing is encoded again.
    pub fn with_encodings(
        update: MarketUpdate,
        json: (Framed, Range<usize>),
        proto: ProtoEncoded,
    ) -> EncodedUpdate {
        EncodedUpdate {
            update,
            json: OnceLock::from(json),
            proto: OnceLock::from(proto),
            zstd: OnceLock::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.update.kind()
    }

    fn json(&self) -> &(Framed, Range<usize>) {
        self.json.get_or_init(|| json::encode_update_framed(&self.update))
    }

    /// The seed JSON push as a text frame.
    pub fn json_frame(&self) -> &[u8] {
        self.json().0.frame()
    }

    /// The seed JSON push, unframed.
    pub fn json_payload(&self) -> &[u8] {
        self.json().0.payload()
    }

    /// The push's `"data"` object: what a JSON batch lists.
    pub fn json_data(&self) -> &[u8] {
        let (framed, range) = self.json();
        &framed.payload()[range.clone()]
    }

    /// Where `json_data` lies in `json_payload`.
    pub fn json_data_range(&self) -> Range<usize> {
        self.json().1.clone()
    }

    pub fn proto(&self) -> &ProtoEncoded {
        self.proto.get_or_init(|| ProtoEncoded::new(&self.update))
    }

    /// The `ServerMessage` zstd-compressed once, as a binary frame.
    pub fn zstd_frame(&self, compressor: &mut Compressor) -> &[u8] {
        self.zstd
            .get_or_init(|| compressor.compress_framed(self.proto().message()))
    }

    /// The ready frame for a receiver that speaks `format`.
    pub fn frame(&self, format: Format, compressor: &mut Compressor) -> &[u8] {
        match format {
            Format::Json => self.json_frame(),
            Format::Proto => self.proto().frame(),
            Format::ProtoZstd => self.zstd_frame(compressor),
        }
    }

    /// The frame in `format` as already encoded by `frame` (empty if it never was: zstd needs
    /// a compressor to be made).
    pub fn encoded_frame(&self, format: Format) -> &[u8] {
        match format {
            Format::Json => self.json_frame(),
            Format::Proto => self.proto().frame(),
            Format::ProtoZstd => self.zstd.get().map_or(&[], Vec::as_slice),
        }
    }

    /// This update marked as a snapshot, for one receiver (not cached: snapshots are sent once
    /// per subscribe): JSON gets `"snapshot":true`, Protobuf is `ServerMessage.snapshot`. A
    /// `refresh` (the channel's state when its data came back after being stale) also gets
    /// `"refresh":true` in JSON and is `ServerMessage.refresh`.
    pub fn snapshot_frame(&self, format: Format, compressor: &mut Compressor, refresh: bool) -> Vec<u8> {
        let marker: &[u8] = if refresh {
            br#","snapshot":true,"refresh":true}"#
        } else {
            br#","snapshot":true}"#
        };
        match format {
            Format::Json => {
                let push = self.json_payload();
                let mut payload = Vec::with_capacity(push.len() + marker.len());
                payload.extend_from_slice(&push[..push.len() - 1]); // the push's closing brace
                payload.extend_from_slice(marker);
                frame(Opcode::Text, &payload)
            }
            Format::Proto => frame(
                Opcode::Binary,
                &protobuf::snapshot_message(self.proto().update(), refresh),
            ),
            Format::ProtoZstd => {
                compressor.compress_framed(&protobuf::snapshot_message(self.proto().update(), refresh))
            }
        }
    }

    /// What this update contributes to a batch in `format` (before any compression).
    pub fn batch_item(&self, format: Format) -> &[u8] {
        match format {
            Format::Json => self.json_data(),
            Format::Proto | Format::ProtoZstd => self.proto().update(),
        }
    }
}
