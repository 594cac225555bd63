//! Pure HTTP pieces of downloads and CHUNKED uploads: Range, Content-Disposition, chunk offsets.

/// What to answer a GET with, given its `Range` header and the file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole file.
    Full,
    /// 206, bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// A single range (`a-b`, `a-`, `-n`) is served as 206. Several ranges are answered with the whole file
/// (200): RFC 9110 lets a server ignore Range, and multipart/byteranges buys browsers nothing. A header
/// that does not parse is ignored too (RFC 9110 §14.2); only a well-formed range outside the file is 416.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial { start: size.saturating_sub(n), end: size - 1 },
        },
        (a, "") => match num(a) {
            None => RangeAnswer::Full,
            Some(a) if a >= size => RangeAnswer::Unsatisfiable,
            Some(a) => RangeAnswer::Partial { start: a, end: size - 1 },
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= size {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial { start: a, end: b.min(size - 1) }
                }
            }
            _ => RangeAnswer::Full,
        },
    }
}

/// `attachment; filename*=UTF-8''<pct-encoded>` (RFC 6266/8187): everything but attr-chars encoded.
pub fn content_disposition(name: &str) -> String {
    let mut out = String::from("attachment; filename*=UTF-8''");
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What to do with one CHUNKED POST, given how many bytes the temporary file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkAction {
    /// Write the chunk at its offset (appends, or rewrites an overlap with the same range).
    Write,
    /// The range is already written (a retry): accept without writing.
    AlreadyHave,
    /// The chunk starts after the current end: refuse (409), the browser must send what is missing.
    Gap { have: u64 },
    /// The chunk runs past the announced total.
    PastEnd,
}

pub fn chunk_action(have: u64, offset: u64, len: u64, total: u64) -> ChunkAction {
    let Some(end) = offset.checked_add(len) else {
        return ChunkAction::PastEnd;
    };
    if end > total {
        ChunkAction::PastEnd
    } else if offset > have {
        ChunkAction::Gap { have }
    } else if end <= have {
        ChunkAction::AlreadyHave
    } else {
        ChunkAction::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn ranges() {
        let r = |h: &str, s| parse_range(Some(h), s);
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(r("bytes=0-4", 10), Partial { start: 0, end: 4 });
        assert_eq!(r("bytes=5-", 10), Partial { start: 5, end: 9 });
        assert_eq!(r("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=8-100", 10), Partial { start: 8, end: 9 });
        assert_eq!(r("bytes=9-9", 10), Partial { start: 9, end: 9 });
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Unsatisfiable);
        // Ignored: several ranges, malformed, other units, reversed.
        assert_eq!(r("bytes=0-1,3-4", 10), Full);
        assert_eq!(r("bytes=a-b", 10), Full);
        assert_eq!(r("bytes=5-2", 10), Full);
        assert_eq!(r("items=0-1", 10), Full);
        assert_eq!(r("bytes=+1-2", 10), Full);
        assert_eq!(r("bytes=-", 10), Full);
        assert_eq!(r("bytes=99999999999999999999999-", 10), Full);
    }

    #[test]
    fn disposition() {
        assert_eq!(content_disposition("a b.txt"), "attachment; filename*=UTF-8''a%20b.txt");
        assert_eq!(content_disposition("ø\"x;y"), "attachment; filename*=UTF-8''%C3%B8%22x%3By");
        assert_eq!(content_disposition("a\r\nSet-Cookie: x"), "attachment; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x");
    }

    #[test]
    fn chunks() {
        assert_eq!(chunk_action(0, 0, 10, 30), ChunkAction::Write);
        assert_eq!(chunk_action(10, 10, 10, 30), ChunkAction::Write);
        assert_eq!(chunk_action(20, 10, 10, 30), ChunkAction::AlreadyHave);
        assert_eq!(chunk_action(15, 10, 10, 30), ChunkAction::Write);
        assert_eq!(chunk_action(10, 20, 10, 30), ChunkAction::Gap { have: 10 });
        assert_eq!(chunk_action(20, 20, 11, 30), ChunkAction::PastEnd);
        assert_eq!(chunk_action(0, u64::MAX, 2, u64::MAX), ChunkAction::PastEnd);
        assert_eq!(chunk_action(0, 0, 0, 0), ChunkAction::AlreadyHave);
    }
}
