//! What a connection receives: seed JSON text frames, or Protobuf `ServerMessage` binary
//! frames, plain or each one zstd frame. Chosen per connection by WebSocket subprotocol.

use crate::error::{CoreError, CoreResult, ErrorCode};

use super::wsframe::{frame, Opcode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Proto,
    ProtoZstd,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Json, Format::Proto, Format::ProtoZstd];

    /// The WebSocket subprotocol that selects this format (JSON is the default, with none).
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Format::Json => "tickgate.v1.json",
            Format::Proto => "tickgate.v1.proto",
            Format::ProtoZstd => "tickgate.v1.proto+zstd",
        }
    }

    pub fn parse(name: &str) -> CoreResult<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.subprotocol() == name || f.short_name() == name)
            .ok_or_else(|| CoreError::new(ErrorCode::InvalidMessage, format!("unknown format {name:?}")))
    }

    /// `json`, `proto` or `proto+zstd`.
    pub const fn short_name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Proto => "proto",
            Format::ProtoZstd => "proto+zstd",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// zstd level: small frames gain nothing from higher levels, and each update is compressed
/// on the hot path.
pub const ZSTD_LEVEL: i32 = 3;

/// A reusable zstd context, optionally with a dictionary (which helps small frames most).
pub struct Compressor {
    inner: zstd::bulk::Compressor<'static>,
    dictionary_id: Option<u32>,
}

impl Compressor {
    pub fn new(dictionary: Option<&[u8]>) -> CoreResult<Compressor> {
        let fail = |e: std::io::Error| CoreError::new(ErrorCode::Internal, format!("zstd: {e}"));
        let mut inner = match dictionary {
            Some(d) => zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, d).map_err(fail)?,
            None => zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(fail)?,
        };
        // Each frame stands alone for any standard decoder: content size in the header and the
        // dictionary's id (when one is used) so a client can tell which; no checksum (4 bytes a
        // frame that TCP and the WebSocket length already cover).
        inner
            .include_contentsize(true)
            .and_then(|_| inner.include_checksum(false))
            .and_then(|_| inner.include_dictid(dictionary.is_some()))
            .map_err(fail)?;
        Ok(Compressor {
            inner,
            dictionary_id: dictionary
                .and_then(zstd::zstd_safe::get_dict_id_from_dict)
                .map(|id| id.get()),
        })
    }

    pub fn dictionary_id(&self) -> Option<u32> {
        self.dictionary_id
    }

    /// One zstd frame holding `data`, as a WebSocket binary frame.
    pub fn compress_framed(&mut self, data: &[u8]) -> Vec<u8> {
        // Compressing into a growable Vec does not fail for valid parameters; should it ever, a
        // fresh context's frame is still a valid zstd frame, where raw bytes would not be.
        let compressed = self
            .inner
            .compress(data)
            .or_else(|_| zstd::bulk::compress(data, ZSTD_LEVEL))
            .unwrap_or_default();
        frame(Opcode::Binary, &compressed)
    }
}

/// The unframed payload of a server frame in `format`, for messages the edge builds itself
/// (replies, errors): JSON stays text, Protobuf stays binary, zstd compresses it once.
pub fn frame_message(format: Format, payload: &[u8], compressor: &mut Compressor) -> Vec<u8> {
    match format {
        Format::Json => frame(Opcode::Text, payload),
        Format::Proto => frame(Opcode::Binary, payload),
        Format::ProtoZstd => compressor.compress_framed(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_subprotocol_and_name() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.subprotocol()).unwrap(), f);
            assert_eq!(Format::parse(f.short_name()).unwrap(), f);
        }
        assert!(Format::parse("tickgate.v2.proto").is_err());
    }

    #[test]
    fn zstd_frames_decode_with_the_reference_decoder() {
        let mut c = Compressor::new(None).unwrap();
        let data = b"hello hello hello hello hello".repeat(10);
        let framed = c.compress_framed(&data);
        assert_eq!(framed[0], 0x82);
        let payload = &framed[if framed[1] == 126 { 4 } else { 2 }..];
        assert_eq!(zstd::bulk::decompress(payload, 1 << 20).unwrap(), data);
        assert!(payload.len() < data.len());
    }
}
