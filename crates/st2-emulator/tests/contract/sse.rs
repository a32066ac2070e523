//! st2's exact SSE byte framing (`st2common/stream/listener.py` `format()`): a keep-alive is one
//! bare `\n`; an event is `event: <name>\n` + `data: <one line>\n` + `\n`. Nothing else exists on
//! st2's wire — no `id:`, no `retry:`, no `:` comments, no CRLF, no multi-line `data:` — so this
//! parser rejects anything else instead of being lenient like a browser's EventSource.

use serde_json::Value;

/// One unit of an st2 stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The bare `\n` heartbeat.
    KeepAlive,
    /// `event: name` + `data: data`.
    Event {
        /// Event name, e.g. `st2.execution__update`.
        name: String,
        /// The single data line, verbatim.
        data: String,
    },
}

impl Item {
    /// The event name, or `None` for a keep-alive.
    pub fn name(&self) -> Option<&str> {
        match self {
            Item::KeepAlive => None,
            Item::Event { name, .. } => Some(name),
        }
    }

    /// The data line decoded as JSON (panics with the event name when it is not JSON).
    pub fn json(&self) -> Value {
        match self {
            Item::KeepAlive => panic!("a keep-alive carries no data"),
            Item::Event { name, data } => serde_json::from_str(data)
                .unwrap_or_else(|e| panic!("data of {name} is not JSON ({e}): {data}")),
        }
    }
}

/// Where and why bytes break st2's framing.
#[derive(Debug, thiserror::Error)]
#[error("SSE framing differs from st2 at byte {offset}: {reason} (next bytes: {next:?})")]
pub struct FramingError {
    /// Byte offset into the stream.
    pub offset: usize,
    /// What was expected.
    pub reason: String,
    /// Up to 60 bytes from the offset, lossily decoded.
    pub next: String,
}

/// Parse as many complete items as `buf` holds; returns them and how many bytes they used.
/// An incomplete trailing item is left for the next call.
pub fn parse_prefix(buf: &[u8]) -> Result<(Vec<Item>, usize), FramingError> {
    let mut items = Vec::new();
    let mut at = 0;
    let fail = |offset: usize, reason: &str| FramingError {
        offset,
        reason: reason.to_string(),
        next: String::from_utf8_lossy(&buf[offset..buf.len().min(offset + 60)]).into_owned(),
    };
    while at < buf.len() {
        if buf[at] == b'\n' {
            items.push(Item::KeepAlive);
            at += 1;
            continue;
        }
        let Some(name) = field(buf, at, b"event: ").map_err(|r| fail(at, r))? else {
            break;
        };
        let (name, after_name) = name;
        let Some((data, after_data)) =
            field(buf, after_name, b"data: ").map_err(|r| fail(after_name, r))?
        else {
            break;
        };
        match buf.get(after_data) {
            None => break,
            Some(b'\n') => {}
            Some(_) => {
                return Err(fail(
                    after_data,
                    "an event must end with an empty line right after its single `data:` line",
                ));
            }
        }
        items.push(Item::Event { name, data });
        at = after_data + 1;
    }
    Ok((items, at))
}

/// Parse a complete stream body; trailing bytes that do not form an item are an error.
pub fn parse_all(buf: &[u8]) -> Result<Vec<Item>, FramingError> {
    let (items, used) = parse_prefix(buf)?;
    if used != buf.len() {
        return Err(FramingError {
            offset: used,
            reason: "stream ends in the middle of an event".into(),
            next: String::from_utf8_lossy(&buf[used..]).into_owned(),
        });
    }
    Ok(items)
}

/// Read `prefix` + value + `\n` at `at`. `Ok(None)` when more bytes are needed.
fn field(buf: &[u8], at: usize, prefix: &[u8]) -> Result<Option<(String, usize)>, &'static str> {
    let rest = &buf[at..];
    let common = rest.len().min(prefix.len());
    if rest[..common] != prefix[..common] {
        return Err(if prefix == b"event: " {
            "expected a bare `\\n` keep-alive or `event: <name>` (st2 sends no id:, retry: or comment lines)"
        } else {
            "expected exactly one `data: <json>` line after `event:`"
        });
    }
    if rest.len() < prefix.len() {
        return Ok(None);
    }
    let Some(end) = rest[prefix.len()..].iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    let value = &rest[prefix.len()..prefix.len() + end];
    if value.contains(&b'\r') {
        return Err("st2 frames use `\\n` line ends, never `\\r`");
    }
    let value = std::str::from_utf8(value).map_err(|_| "field value is not UTF-8")?;
    Ok(Some((value.to_string(), at + prefix.len() + end + 1)))
}
