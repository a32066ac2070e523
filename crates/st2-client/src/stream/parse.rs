//! An incremental parser for server-sent events as st2 writes them.
//!
//! st2 frames every event as `event: <name>\ndata: <one-line JSON>\n\n` and its keep-alive as
//! one bare `\n` (see `st2-api.md` §7.1). The parser follows the WHATWG rules so any valid
//! framing parses the same: bytes may be split anywhere, lines may end in `\n`, `\r\n` or `\r`,
//! `:` lines are comments, multi-line `data:` fields are joined with `\n`, and an empty line
//! with no data dispatches nothing.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the frame named none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why the byte stream cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// One event (or one line) grew past the bound.
    #[error(
        "an SSE event exceeded {limit} bytes; the stream is not st2's, or raise the bound if st2 really sends results this large"
    )]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
}

/// Largest event accepted by default: st2 caps a stored result at 14 MiB (`max_result_size`),
/// and an execution event carries its result, so leave room above that.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 24 << 20;

/// Turns chunks of bytes into events; keeps the unfinished tail between calls.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    // A `\r` ended the last chunk: a `\n` opening the next one belongs to it.
    after_cr: bool,
    at_start: bool,
    max_event_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser refusing events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            event: String::new(),
            data: String::new(),
            has_data: false,
            after_cr: false,
            at_start: true,
            max_event_bytes,
        }
    }

    /// Feeds `chunk`, returning the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, ParseError> {
        let mut out = Vec::new();
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            let (whole, rest) = (&chunk[..end], &chunk[end + 1..]);
            let ending = chunk[end];
            // A line wholly inside this chunk is read where it is; only one that began in
            // an earlier chunk is put together in `line` (whose buffer is kept for the next).
            let event = if self.line.is_empty() {
                if whole.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                self.take_line(whole)?
            } else {
                self.extend_line(whole)?;
                let line = std::mem::take(&mut self.line);
                let event = self.take_line(&line);
                self.line = line;
                self.line.clear();
                event?
            };
            if let Some(event) = event {
                out.push(event);
            }
            chunk = rest;
            if ending == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.extend_line(chunk)?;
        Ok(out)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        if self.line.len() + bytes.len() > self.max_event_bytes {
            return Err(self.too_large());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn too_large(&mut self) -> ParseError {
        // Start clean, so a caller that reconnects reuses nothing of the refused event.
        *self = Self::new(self.max_event_bytes);
        ParseError::TooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// Applies one complete line; an empty one dispatches the event gathered so far.
    fn take_line(&mut self, mut line: &[u8]) -> Result<Option<SseEvent>, ParseError> {
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let data = std::mem::take(&mut self.data);
            return Ok(Some(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
            }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        // Checked whole first: the lossy walk is several times slower on st2's all-UTF-8 text.
        let value = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(self.too_large());
                }
                if self.has_data {
                    self.data.push('\n');
                    self.data.push_str(&value);
                } else {
                    // Usually the only data line: taken as one allocation of its size.
                    self.data = value.into_owned();
                }
                self.has_data = true;
            }
            // st2 sends neither `id:` nor `retry:` and ignores Last-Event-ID; unknown fields
            // are ignored as the SSE rules say.
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parser: &mut SseParser, bytes: &[u8]) -> Vec<SseEvent> {
        parser.push(bytes).unwrap()
    }

    #[test]
    fn keep_alive_and_comments_dispatch_nothing() {
        let mut p = SseParser::default();
        assert!(all(&mut p, b"\n\n: ping\n\n").is_empty());
        let got = all(&mut p, b"event: a\ndata: 1\n\n");
        assert_eq!(
            got,
            vec![SseEvent {
                event: "a".into(),
                data: "1".into()
            }]
        );
    }

    #[test]
    fn crlf_and_lone_cr_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(all(&mut p, b"event: a\r").is_empty());
        assert!(all(&mut p, b"\ndata: x\r").is_empty());
        // A `\r` after a chunk-ending `\r` is a second line end (the empty line), not CRLF.
        let got = all(&mut p, b"\rdata:y\r\n\r\n");
        let pairs: Vec<_> = got
            .iter()
            .map(|e| (e.event.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "x"), ("message", "y")]);
        let got = all(&mut p, b"data: z\rdata: w\r\r");
        assert_eq!(got[0].data, "z\nw");
        assert_eq!(got[0].event, "message");
    }

    #[test]
    fn an_oversized_event_is_refused() {
        let mut p = SseParser::new(16);
        assert_eq!(
            p.push(b"data: 0123456789abcdefgh"),
            Err(ParseError::TooLarge { limit: 16 })
        );
        // The parser starts clean afterwards.
        assert_eq!(all(&mut p, b"data: ok\n\n")[0].data, "ok");
        // A line over the bound inside one chunk is refused the same way.
        assert_eq!(
            p.push(b"data: 0123456789abcdefgh\n\n"),
            Err(ParseError::TooLarge { limit: 16 })
        );
        assert_eq!(all(&mut p, b"data: ok\n\n")[0].data, "ok");
    }

    #[test]
    fn every_split_of_a_stream_gives_the_same_events() {
        let stream = b"event: st2.execution__update\ndata: {\"id\": 1}\n\n: ka\r\ndata: a\r\ndata: b\r\n\r\n";
        let whole = all(&mut SseParser::default(), stream);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].data, "a\nb");
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let mut p = SseParser::default();
                let mut got = all(&mut p, &stream[..i]);
                got.extend(all(&mut p, &stream[i..j]));
                got.extend(all(&mut p, &stream[j..]));
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
    }
}
