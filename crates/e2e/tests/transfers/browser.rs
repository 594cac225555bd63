//! A test "browser": the WEBSOCKET_V2 upload client of §6.6 (listing, OK/SKIP, chunks, FILES_COMPLETED,
//! ping/pong, CLOSE) with tokio-tungstenite, able to cut its connection after a number of bytes.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use transfer::codec::{client, decode_server, ServerMessage};

pub const CHUNK: usize = 1 << 20;

/// One file to upload: its path in the tree and where its bytes are on this machine.
#[derive(Clone, Debug)]
pub struct Item {
    pub relative: String,
    pub source: PathBuf,
    pub size: u64,
    pub modified_ms: i64,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub oks: usize,
    pub skips: usize,
    pub completed: i32,
    /// The connection was cut on purpose.
    pub cut: bool,
    pub bytes_sent: u64,
    /// The server closed the session: (code, reason).
    pub closed_by_server: Option<(u16, String)>,
}

/// Uploads `items` through `url`; stops dead (no CLOSE, the TCP connection just goes) once `cut_after`
/// bytes of data were sent.
pub async fn upload(url: &str, items: &[Item], cut_after: Option<u64>) -> anyhow::Result<Outcome> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let mut out = Outcome::default();
    // The ping the real browser sends now and then: the answer must be `pong`.
    ws.send(Message::Text("ping".into())).await?;
    for batch in items.chunks(5000).enumerate().map(|(b, chunk)| (b * 5000, chunk)).collect::<Vec<_>>() {
        let (first, batch) = batch;
        let listing = client::listing(
            batch.iter().enumerate().map(|(i, it)| ((first + i) as i32, it.size as i64, it.modified_ms, it.relative.as_str())),
        );
        ws.send(Message::Binary(listing.into())).await?;
        let target = (first + batch.len()) as i32;
        let mut queue: VecDeque<i32> = VecDeque::new();
        while out.completed < target {
            while let Some(id) = queue.pop_front() {
                let item = &items[id as usize];
                let mut f = tokio::fs::File::open(&item.source).await?;
                let mut left = item.size;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = f.read(&mut buf[..CHUNK.min(left as usize)]).await?;
                    ws.send(Message::Binary(client::chunk(id, &buf[..n]).into())).await?;
                    out.bytes_sent += n as u64;
                    left -= n as u64;
                    if cut_after.is_some_and(|c| out.bytes_sent >= c) {
                        out.cut = true;
                        drop(ws); // no CLOSE: the connection is simply gone
                        return Ok(out);
                    }
                    if left == 0 {
                        break;
                    }
                }
            }
            let Some(frame) = ws.next().await else { anyhow::bail!("server ended the connection") };
            match frame? {
                Message::Binary(b) => {
                    for m in decode_server(&b)? {
                        match m {
                            ServerMessage::Ok(id) => {
                                out.oks += 1;
                                queue.push_back(id);
                            }
                            ServerMessage::Skip(_) => out.skips += 1,
                            ServerMessage::FilesCompleted(n) => out.completed = n,
                        }
                    }
                }
                Message::Text(t) => anyhow::ensure!(t.as_str() == "pong", "unexpected text {t}"),
                Message::Close(c) => {
                    out.closed_by_server = c.map(|c| (u16::from(c.code), c.reason.to_string()));
                    return Ok(out);
                }
                _ => {}
            }
        }
    }
    ws.send(Message::Binary(client::close().into())).await?;
    // The server answers CLOSE by closing.
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(c) = m {
            out.closed_by_server = c.map(|c| (u16::from(c.code), c.reason.to_string()));
            break;
        }
    }
    Ok(out)
}

/// Sends raw frames and returns how the server ended the session (for refusals).
pub async fn send_raw(url: &str, frames: Vec<Vec<u8>>) -> anyhow::Result<Option<(u16, String)>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    for f in frames {
        ws.send(Message::Binary(f.into())).await?;
    }
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Close(c)) => return Ok(c.map(|c| (u16::from(c.code), c.reason.to_string()))),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}
