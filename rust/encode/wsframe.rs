//! Server-to-client WebSocket frames (RFC 6455 section 5.2). Server frames are unmasked, so
//! one framed buffer can be written as-is to every receiver's socket.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Text = 0x1,
    Binary = 0x2,
}

/// Longest header: 2 bytes + 8-byte extended length.
pub const MAX_HEADER: usize = 10;

/// An encoded payload with room for its frame header in front, so framing needs no copy.
/// The payload starts at `MAX_HEADER`; the frame starts wherever its header begins.
#[derive(Debug, Clone)]
pub struct Framed {
    buf: Vec<u8>,
    start: usize,
}

impl Framed {
    /// A buffer for an encoder to append the payload to.
    pub fn buffer(capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(MAX_HEADER + capacity);
        buf.resize(MAX_HEADER, 0);
        buf
    }

    /// Writes the header for what was appended to a `Framed::buffer`.
    pub fn seal(mut buf: Vec<u8>, opcode: Opcode) -> Framed {
        let start = header_before(&mut buf, MAX_HEADER, opcode);
        Framed { buf, start }
    }

    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf[MAX_HEADER..]
    }
}

/// Writes a frame header for the payload `buf[payload_start..]` into the room in front of it
/// (at least `MAX_HEADER` bytes must be free there) and returns where the frame starts.
pub fn header_before(buf: &mut [u8], payload_start: usize, opcode: Opcode) -> usize {
    let len = buf.len() - payload_start;
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x80 | opcode as u8;
    let n = if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = payload_start - n;
    buf[start..payload_start].copy_from_slice(&header[..n]);
    start
}

/// A complete, final (FIN) unmasked frame carrying `payload`.
pub fn frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
    out.push(0x80 | opcode as u8);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_forms() {
        assert_eq!(frame(Opcode::Text, b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = frame(Opcode::Binary, &[0u8; 126]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 126]);
        assert_eq!(f.len(), 4 + 126);
        let f = frame(Opcode::Text, &vec![b'a'; 70_000]);
        assert_eq!(&f[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
        assert_eq!(f.len(), 10 + 70_000);
    }

    #[test]
    fn sealed_buffers_match_copied_frames() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            let mut buf = Framed::buffer(len);
            buf.extend_from_slice(&payload);
            let sealed = Framed::seal(buf, Opcode::Binary);
            assert_eq!(
                sealed.frame(),
                frame(Opcode::Binary, &payload).as_slice(),
                "{len}"
            );
            assert_eq!(sealed.payload(), payload.as_slice());
        }
    }
}
