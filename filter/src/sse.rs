//! Incremental Server-Sent Events splitting and parsing.
//!
//! Bytes arrive in arbitrary chunks (an event, a line, even a `\r\n` pair may
//! be split across chunks). [`SseSplitter`] keeps only the unfinished tail and
//! hands out complete events as raw bytes (terminator included), so a caller
//! can inspect them and pass them on unchanged or rewritten.

/// Splits a byte stream into complete SSE events.
#[derive(Debug, Default)]
pub struct SseSplitter {
    pending: Vec<u8>,
    /// Where to resume scanning `pending` for a blank line.
    scan_from: usize,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk; calls `f` with each event completed by it, in order.
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = self.scan_from;
        // An event ends at a blank line: "\n\n", "\r\n\r\n", "\r\r" or mixes.
        while i < self.pending.len() {
            if let Some(end) = blank_line_end(&self.pending, i) {
                if let Some(ev) = self.pending.get(start..end) {
                    f(ev);
                }
                start = end;
                i = end;
            } else {
                i += 1;
            }
        }
        self.pending.drain(..start);
        // Re-scan at most the last 3 bytes: a terminator may straddle chunks.
        self.scan_from = self.pending.len().saturating_sub(3);
    }

    /// Bytes of an unfinished event still held.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Takes the unfinished tail (at end of stream).
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.scan_from = 0;
        std::mem::take(&mut self.pending)
    }
}

/// If a line break at `i` is followed by another one (a blank line), the
/// index just past the second break.
fn blank_line_end(buf: &[u8], i: usize) -> Option<usize> {
    let first = line_break_len(buf, i)?;
    let second = line_break_len(buf, i + first)?;
    Some(i + first + second)
}

fn line_break_len(buf: &[u8], i: usize) -> Option<usize> {
    match buf.get(i)? {
        b'\n' => Some(1),
        b'\r' => match buf.get(i + 1) {
            Some(b'\n') => Some(2),
            // A lone '\r' at the very end may be the first half of "\r\n":
            // wait for more bytes before deciding.
            None => None,
            Some(_) => Some(1),
        },
        _ => None,
    }
}

/// One parsed event: its `event:` name and its `data:` lines joined by '\n'.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: Option<&'a str>,
    pub data: std::borrow::Cow<'a, str>,
    pub has_data: bool,
}

/// Parses a raw event (as given by [`SseSplitter::push`]). Invalid UTF-8 lines are skipped.
pub fn parse_event(raw: &[u8]) -> Event<'_> {
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(e) => raw.get(..e.valid_up_to()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default(),
    };
    let mut ev = Event::default();
    let mut data_lines = 0;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(p) => {
                let v = line.get(p + 1..).unwrap_or("");
                (line.get(..p).unwrap_or(""), v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => ev.name = Some(value),
            "data" => {
                ev.has_data = true;
                if data_lines == 0 {
                    ev.data = std::borrow::Cow::Borrowed(value);
                } else {
                    let mut s = ev.data.into_owned();
                    s.push('\n');
                    s.push_str(value);
                    ev.data = std::borrow::Cow::Owned(s);
                }
                data_lines += 1;
            }
            _ => {}
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = SseSplitter::new();
        let mut out = vec![];
        for c in chunks {
            s.push(c, |ev| out.push(String::from_utf8_lossy(ev).into_owned()));
        }
        out
    }

    #[test]
    fn splits_on_blank_lines_with_any_newline_style() {
        let evs = split_all(&[b"data: a\n\ndata: b\r\n\r\nevent: x\ndata: c\n\n"]);
        assert_eq!(evs, vec!["data: a\n\n", "data: b\r\n\r\n", "event: x\ndata: c\n\n"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: two\n\n: comment\ndata: [DONE]\n\n";
        let whole = split_all(&[stream]);
        assert_eq!(whole.len(), 3);
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let parts = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(split_all(&parts), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let stream: &[u8] = b"data: x\r\n\r\ndata: y\n\n";
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(split_all(&chunks), vec!["data: x\r\n\r\n", "data: y\n\n"]);
    }

    #[test]
    fn keeps_unfinished_tail() {
        let mut s = SseSplitter::new();
        let mut n = 0;
        s.push(b"data: a\n\ndata: par", |_| n += 1);
        assert_eq!(n, 1);
        assert_eq!(s.pending(), b"data: par");
        assert_eq!(s.take_pending(), b"data: par".to_vec());
        assert!(s.pending().is_empty());
    }

    #[test]
    fn parses_fields() {
        let ev = parse_event(b"event: message_delta\ndata: {\"x\":1}\n\n");
        assert_eq!(ev.name, Some("message_delta"));
        assert_eq!(ev.data, "{\"x\":1}");
        let ev = parse_event(b": keepalive\ndata:a\ndata: b\n\n");
        assert_eq!(ev.name, None);
        assert_eq!(ev.data, "a\nb");
        assert!(parse_event(b": only a comment\n\n").data.is_empty());
    }
}
