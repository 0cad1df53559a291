//! The reference echo server: what the Python and C clients are measured against. Frame by
//! frame for WebSocket (a ping gets its pong, a close its echo), byte for byte with `--raw`.
//! Reading never waits for writing (a task writes what a channel brings), so a client with
//! many large messages in flight never deadlocks against it.

use crate::ws;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const READ_CHUNK: usize = 256 * 1024;

pub async fn serve(port: u16, raw: bool) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("ready");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::task::spawn_local(async move {
            if let Err(error) = connection(stream, raw).await {
                if error.kind() != io::ErrorKind::ConnectionReset {
                    eprintln!("echo: {error}");
                }
            }
        });
    }
}

async fn connection(mut stream: TcpStream, raw: bool) -> io::Result<()> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    if !raw {
        ws::server_handshake(&mut stream, &mut buf).await?;
    }
    let (mut reader, mut writer) = stream.into_split();
    let (to_writer, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let writing = tokio::task::spawn_local(async move {
        while let Some(chunk) = outgoing.recv().await {
            writer.write_all(&chunk).await?;
        }
        writer.shutdown().await
    });
    loop {
        let (out, closed) = if raw {
            (
                std::mem::replace(&mut buf, Vec::with_capacity(READ_CHUNK)),
                false,
            )
        } else {
            echo_frames(&mut buf)
        };
        if !out.is_empty() && to_writer.send(out).is_err() {
            break;
        }
        if closed {
            break;
        }
        buf.reserve(READ_CHUNK);
        if reader.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    drop(to_writer);
    writing.await.map_err(io::Error::other)?
}

/// Takes the whole frames at the start of `buf` and returns their echoes, and whether a
/// close frame was among them (nothing after it is answered).
fn echo_frames(buf: &mut Vec<u8>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut closed = false;
    while let Some(head) = ws::parse_head(&buf[consumed..]) {
        let end = consumed + head.frame_len();
        if buf.len() < end {
            buf.reserve(end - buf.len());
            break;
        }
        let payload = &mut buf[consumed + head.head_len..end];
        if let Some(mask) = head.mask {
            ws::apply_mask(payload, mask);
        }
        let opcode = if head.opcode == ws::OP_PING {
            ws::OP_PONG
        } else {
            head.opcode
        };
        if opcode != ws::OP_PONG || head.opcode == ws::OP_PING {
            ws::push_head(&mut out, head.fin, opcode, payload.len(), false);
            out.extend_from_slice(payload);
        }
        consumed = end;
        if head.opcode == ws::OP_CLOSE {
            closed = true;
            break;
        }
    }
    buf.drain(..consumed);
    (out, closed)
}
