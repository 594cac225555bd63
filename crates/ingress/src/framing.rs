//! Watches the raw HTTP/1 bytes a client sends for one smuggling shape hyper accepts: a request head with
//! both `Content-Length` and `Transfer-Encoding`. hyper drops the length, reads the body chunked and closes
//! the connection afterwards (RFC 9112 §6.3 allows that); a proxy in front of another parser should refuse
//! instead, and hyper's request gives no sign the length was there. So the bytes are followed as they are
//! read, head by head: bodies are skipped by their length or chunk by chunk, without copying them.
//!
//! The flag is per connection: a pipelined request read in the same segment as a bad one is refused too.
//! Anything this follower cannot make sense of (an HTTP/2 preface, an upgrade, a head hyper will refuse
//! anyway) stops it; it never refuses on its own, it only tells the handler.

/// Largest head followed; hyper answers 431 to larger ones before the handler runs.
const MAX_HEAD: usize = 1 << 20;
/// A chunk-size line (hex size plus extensions) longer than this is left to hyper to refuse.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug)]
enum State {
    /// Collecting a request head up to its empty line (in `FramingFollower::head`, kept between requests).
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Collecting a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping chunk data, then its CRLF (counted in).
    ChunkData(u64),
    /// After the last chunk: trailer lines up to the empty one.
    Trailers(Vec<u8>),
    /// Not following any more.
    Off,
}

#[derive(Debug)]
pub struct FramingFollower {
    state: State,
    head: Vec<u8>,
    ambiguous: bool,
}

impl Default for FramingFollower {
    fn default() -> Self {
        FramingFollower { state: State::Head, head: Vec::new(), ambiguous: false }
    }
}

/// How the body after a head is framed.
enum BodyFraming {
    Ambiguous,
    Length(u64),
    Chunked,
    None,
    /// Upgrade, CONNECT, or a head hyper refuses: stop following.
    Stop,
}

fn framing_of(head: &[u8]) -> BodyFraming {
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; 128];
    let mut req = httparse::Request::new(&mut []);
    // The HTTP/2 preface (`PRI * HTTP/2.0`) fails here too: HTTP/2 has no such framing to follow.
    match req.parse_with_uninit_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return BodyFraming::Stop,
    }
    if req.method == Some("CONNECT") {
        return BodyFraming::Stop;
    }
    let (mut length, mut chunked, mut upgrade) = (None, false, false);
    let mut lengths = 0;
    let mut encodings = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
            chunked = h.value.to_ascii_lowercase().ends_with(b"chunked");
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    match (lengths, encodings) {
        (l, e) if l > 0 && e > 0 => BodyFraming::Ambiguous,
        _ if upgrade => BodyFraming::Stop,
        (0, e) if e > 0 && chunked => BodyFraming::Chunked,
        (0, 0) => BodyFraming::None,
        (_, 0) => length.map_or(BodyFraming::Stop, BodyFraming::Length),
        _ => BodyFraming::Stop,
    }
}

/// Skips up to `left` bytes of `data`: how many were skipped, and whether that was the last of them.
fn skip(left: &mut u64, data: &[u8]) -> (usize, bool) {
    let take = (*left).min(data.len() as u64);
    *left -= take;
    (take as usize, *left == 0)
}

/// Appends to `line` up to and including the first `\n` in `data`; returns bytes used and whether the
/// line ended.
fn take_line(line: &mut Vec<u8>, data: &[u8]) -> (usize, bool) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            line.extend_from_slice(&data[..=i]);
            (i + 1, true)
        }
        None => {
            line.extend_from_slice(data);
            (data.len(), false)
        }
    }
}

impl FramingFollower {
    /// True once a head on this connection carried both Content-Length and Transfer-Encoding.
    pub fn ambiguous(&self) -> bool {
        self.ambiguous
    }

    /// Follows the next bytes read from the client.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match &mut self.state {
                State::Off => return,
                State::Head => {
                    let buf = &mut self.head;
                    // Empty lines before a request line are allowed (RFC 9112 §2.2).
                    if buf.is_empty() {
                        let skip = data.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                        if skip > 0 {
                            data = &data[skip..];
                            continue;
                        }
                    }
                    match head_end(buf, data) {
                        Some(used) => {
                            buf.extend_from_slice(&data[..used]);
                            let framing = framing_of(buf);
                            buf.clear();
                            self.state = match framing {
                                BodyFraming::Ambiguous => {
                                    self.ambiguous = true;
                                    State::Off
                                }
                                BodyFraming::Length(0) | BodyFraming::None => State::Head,
                                BodyFraming::Length(n) => State::Body(n),
                                BodyFraming::Chunked => State::ChunkSize(Vec::new()),
                                BodyFraming::Stop => State::Off,
                            };
                            used
                        }
                        None if buf.len() + data.len() > MAX_HEAD => {
                            self.state = State::Off;
                            self.head = Vec::new();
                            data.len()
                        }
                        None => {
                            buf.extend_from_slice(data);
                            data.len()
                        }
                    }
                }
                State::Body(n) => {
                    let (take, done) = skip(n, data);
                    if done {
                        self.state = State::Head;
                    }
                    take
                }
                State::ChunkSize(line) => {
                    let (used, done) = take_line(line, data);
                    if done {
                        let text = std::str::from_utf8(line).unwrap_or("");
                        let hex = text.split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(hex, 16) {
                            Ok(0) => State::Trailers(Vec::new()),
                            Ok(size) => State::ChunkData(size.saturating_add(2)),
                            Err(_) => State::Off,
                        };
                    } else if line.len() > MAX_CHUNK_LINE {
                        self.state = State::Off;
                    }
                    used
                }
                State::ChunkData(n) => {
                    let (take, done) = skip(n, data);
                    if done {
                        self.state = State::ChunkSize(Vec::new());
                    }
                    take
                }
                State::Trailers(line) => {
                    let (used, done) = take_line(line, data);
                    if done {
                        if line == b"\r\n" || line == b"\n" {
                            self.state = State::Head;
                        } else {
                            line.clear();
                        }
                    } else if line.len() > MAX_HEAD {
                        self.state = State::Off;
                    }
                    used
                }
            };
            data = &data[used..];
        }
    }
}

/// Where a head that began with `before` ends within `data` (index just past its empty line), if it does;
/// the empty line may begin in `before`.
fn head_end(before: &[u8], data: &[u8]) -> Option<usize> {
    let tail = &before[before.len().saturating_sub(3)..];
    let mut joint = [0u8; 6];
    let n = tail.len() + data.len().min(3);
    joint[..tail.len()].copy_from_slice(tail);
    joint[tail.len()..n].copy_from_slice(&data[..n - tail.len()]);
    match find_end(&joint[..n]) {
        Some(end) if end > tail.len() => Some(end - tail.len()),
        _ => find_end(data),
    }
}

/// End of a head (index just past its empty line) within `bytes`.
fn find_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

#[cfg(test)]
mod tests {
    use super::FramingFollower;

    fn follow(parts: &[&[u8]]) -> bool {
        let mut f = FramingFollower::default();
        for p in parts {
            f.feed(p);
        }
        f.ambiguous()
    }

    fn bytewise(all: &[u8]) -> bool {
        let parts: Vec<&[u8]> = all.chunks(1).collect();
        follow(&parts)
    }

    const CL_TE: &[u8] = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    const TE_CL: &[u8] = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";

    #[test]
    fn both_orders_are_ambiguous_however_the_bytes_arrive() {
        for shape in [CL_TE, TE_CL] {
            assert!(follow(&[shape]));
            assert!(bytewise(shape));
        }
    }

    #[test]
    fn plain_requests_are_not() {
        assert!(!follow(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]));
        assert!(!follow(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"]));
        assert!(!follow(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]));
    }

    #[test]
    fn a_later_request_on_a_kept_alive_connection_is_found_after_any_body() {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        // A length body that looks like a bad head must not be mistaken for one …
        bodies.push(format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", TE_CL.len()).into_bytes().into_iter().chain(TE_CL.iter().copied()).collect());
        // … nor chunk data, with extensions and trailers.
        let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", CL_TE.len()).as_bytes());
        chunked.extend_from_slice(CL_TE);
        chunked.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
        bodies.push(chunked);
        for first in bodies {
            assert!(!follow(&[&first]), "a body alone is not a head");
            assert!(!bytewise(&first));
            let mut both = first.clone();
            both.extend_from_slice(CL_TE);
            assert!(follow(&[&both]));
            assert!(bytewise(&both));
        }
        let mut gets = b"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n\r\n".to_vec();
        gets.extend_from_slice(TE_CL);
        assert!(bytewise(&gets));
    }

    #[test]
    fn http2_and_upgraded_connections_are_not_followed() {
        let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        h2.extend_from_slice(CL_TE);
        assert!(!follow(&[&h2]));
        let mut ws = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec();
        ws.extend_from_slice(CL_TE); // WebSocket frames are not HTTP
        assert!(!follow(&[&ws]));
    }
}
