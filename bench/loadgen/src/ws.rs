//! The little of RFC 6455 a load generator and an echo server need: frame heads, masking,
//! the opening handshake. Not a WebSocket library: it trusts its peers to be correct.

use sha1::{Digest, Sha1};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The client's mask: fixed, so a message is masked once and the same bytes sent each time.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// An HTTP head larger than this is refused.
const MAX_HEAD: usize = 16 * 1024;

/// A frame's head as parsed from the start of a buffer.
pub struct Head {
    pub head_len: usize,
    pub fin: bool,
    pub opcode: u8,
    pub payload_len: usize,
    pub mask: Option<[u8; 4]>,
}

impl Head {
    pub fn frame_len(&self) -> usize {
        self.head_len + self.payload_len
    }
}

/// Parses the head at the start of `buf`; None until all of it is there.
pub fn parse_head(buf: &[u8]) -> Option<Head> {
    let (first, second) = (*buf.first()?, *buf.get(1)?);
    let (mut head_len, payload_len) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        short => (2, short as usize),
    };
    let mask = if second & 0x80 != 0 {
        let key = buf.get(head_len..head_len + 4)?.try_into().ok()?;
        head_len += 4;
        Some(key)
    } else {
        None
    };
    Some(Head {
        head_len,
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        payload_len,
        mask,
    })
}

/// Appends a frame head to `out`: masked with [`MASK`] for a client, bare for a server.
pub fn push_head(out: &mut Vec<u8>, fin: bool, opcode: u8, len: usize, masked: bool) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
}

/// XORs `data` with `mask` (eight bytes at a time: offsets stay multiples of four).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
}

/// One whole client frame (masked), ready to be sent again and again.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    push_head(&mut frame, true, opcode, payload.len(), true);
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], MASK);
    frame
}

/// A client's close frame with code 1000.
pub fn client_close() -> Vec<u8> {
    client_frame(OP_CLOSE, &1000u16.to_be_bytes())
}

/// Reads into `buf` until it holds a whole HTTP head; returns the head's length.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP head too large",
            ));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The client's opening handshake. Bytes read past the response stay in `buf`.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let head_len = read_head(stream, buf).await?;
    if !buf.starts_with(b"HTTP/1.1 101") {
        let status = String::from_utf8_lossy(&buf[..head_len.min(64)]).into_owned();
        return Err(io::Error::new(io::ErrorKind::InvalidData, status));
    }
    buf.drain(..head_len);
    Ok(())
}

/// The server's opening handshake: answers 101 to any request with a key.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let head_len = read_head(stream, buf).await?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let key = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, value)| value.trim().to_owned())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    buf.drain(..head_len);
    let accept = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        Sha1::digest(format!("{key}{GUID}").as_bytes()),
    );
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_frame_parses_back_to_its_payload() {
        for len in [0, 5, 125, 126, 65_535, 65_536, 100_003] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut frame = client_frame(OP_BINARY, &payload);
            let head = parse_head(&frame).expect("whole head");
            assert_eq!(
                (head.fin, head.opcode, head.payload_len),
                (true, OP_BINARY, len)
            );
            assert_eq!(head.frame_len(), frame.len());
            apply_mask(&mut frame[head.head_len..], head.mask.expect("masked"));
            assert_eq!(&frame[head.head_len..], &payload[..]);
        }
    }

    #[test]
    fn a_partial_head_is_not_parsed() {
        let frame = client_frame(OP_BINARY, &[0; 300]);
        assert!(parse_head(&frame[..5]).is_none());
        assert!(parse_head(&frame[..8]).is_some());
    }
}
