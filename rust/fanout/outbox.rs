//! What the dispatcher hands the edge for one connection: references to the shared encoded
//! updates (the outbox, immediate mode) or one shared batch. Frames are not copied while they
//! wait; their bytes are copied once, into the buffer the edge writes.

use std::sync::Arc;

use crate::encode::{Compressor, EncodedUpdate, Format};

/// Frames queued for one connection, in order.
pub struct Frames {
    format: Format,
    updates: Vec<Arc<EncodedUpdate>>,
    len: usize,
}

impl Frames {
    pub fn new(format: Format) -> Frames {
        Frames {
            format,
            updates: Vec::new(),
            len: 0,
        }
    }

    /// Queues `update`'s frame, encoding it now (once for every receiver) if it is the first.
    pub fn push(&mut self, update: &Arc<EncodedUpdate>, compressor: &mut Compressor) {
        self.len += update.frame(self.format, compressor).len();
        self.updates.push(update.clone());
    }

    /// Bytes the frames take on the wire.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The frames, in order: each was encoded by `push`.
    fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.updates.iter().map(|u| u.encoded_frame(self.format))
    }
}

/// One connection's bytes for this flush: its own frames, or a batch shared with others.
pub enum Outgoing {
    Frames(Frames),
    Shared(Arc<Vec<u8>>),
}

impl Outgoing {
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Frames(f) => f.len(),
            Outgoing::Shared(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the bytes into `out`, which must be `len()` long.
    pub fn write_to(&self, out: &mut [u8]) {
        match self {
            Outgoing::Frames(f) => {
                let mut at = 0;
                for frame in f.frames() {
                    out[at..at + frame.len()].copy_from_slice(frame);
                    at += frame.len();
                }
                debug_assert_eq!(at, out.len());
            }
            Outgoing::Shared(b) => out.copy_from_slice(b),
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        self.write_to(&mut out);
        out
    }
}
