//! Incremental Server-Sent Events splitting and parsing.
//!
//! Bytes arrive in arbitrary chunks (an event, a line, even a `\r\n` pair may
//! be split across chunks). [`SseSplitter`] keeps only the unfinished tail and
//! hands out complete events as raw bytes (terminator included), so a caller
//! can inspect them and pass them on unchanged or rewritten.

/// The longest event the splitter holds (1 MiB). A longer one (an event
/// that never ends, or a provider gone wrong) is handed on in fragments,
/// unparsed, so memory stays bounded whatever the stream does.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Splits a byte stream into complete SSE events.
#[derive(Debug)]
pub struct SseSplitter {
    pending: Vec<u8>,
    /// Where to resume scanning `pending` for a blank line.
    scan_from: usize,
    max_event: usize,
    /// Inside an event longer than `max_event`: its bytes are passed on as
    /// fragments until its blank line.
    skipping: bool,
}

impl Default for SseSplitter {
    fn default() -> Self {
        Self::with_max_event(MAX_EVENT_BYTES)
    }
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_max_event(max_event: usize) -> Self {
        SseSplitter { pending: Vec::new(), scan_from: 0, max_event: max_event.max(4), skipping: false }
    }

    /// Adds a chunk; calls `f(bytes, whole)` for what it completes, in
    /// order: `whole` is true for a complete event, false for a fragment of
    /// an over-long event (to pass on, not to parse). Every byte pushed is
    /// handed out exactly once, here or by [`take_pending`](Self::take_pending).
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8], bool)) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = self.scan_from;
        // An event ends at a blank line: "\n\n", "\r\n\r\n", "\r\r" or mixes.
        // From line break to line break (memchr: most bytes are neither).
        while let Some(at) = self.pending.get(i..).and_then(|rest| memchr::memchr2(b'\n', b'\r', rest)) {
            i += at;
            if let Some(end) = blank_line_end(&self.pending, i) {
                if let Some(ev) = self.pending.get(start..end) {
                    f(ev, !self.skipping);
                }
                self.skipping = false;
                start = end;
                i = end;
            } else {
                i += 1;
            }
        }
        let unfinished = self.pending.len() - start;
        if unfinished > self.max_event || (self.skipping && unfinished > 3) {
            // Keep 3 bytes: the first half of a terminator may be among them.
            let cut = self.pending.len() - 3;
            if let Some(frag) = self.pending.get(start..cut) {
                f(frag, false);
            }
            start = cut;
            self.skipping = true;
        }
        self.pending.drain(..start);
        // Re-scan at most the last 3 bytes: a terminator may straddle chunks.
        self.scan_from = self.pending.len().saturating_sub(3);
    }

    /// Bytes of an unfinished event still held.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// True while passing on an over-long event.
    pub fn skipping(&self) -> bool {
        self.skipping
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

/// An event written out: an `event:` line when named, one `data:` line
/// (`data` holds no line break: JSON as serde writes it), a blank line.
/// Every event the filter writes itself (translations, the error that
/// ends a stream) is written here.
pub fn event_bytes(name: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    if let Some(n) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(n.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

/// One parsed event: its `event:` name and its `data:` lines joined by '\n'.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: Option<&'a str>,
    pub data: std::borrow::Cow<'a, str>,
    pub has_data: bool,
    /// The raw bytes stop being UTF-8 somewhere: what follows was left out.
    pub cut: bool,
}

/// Parses a raw event (as given by [`SseSplitter::push`]). Invalid UTF-8 lines are skipped.
pub fn parse_event(raw: &[u8]) -> Event<'_> {
    let (text, cut) = match std::str::from_utf8(raw) {
        Ok(t) => (t, false),
        Err(e) => (raw.get(..e.valid_up_to()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default(), true),
    };
    let mut ev = Event { cut, ..Event::default() };
    let mut data_lines = 0;
    for line in lines(text) {
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

/// The lines of `text` split at every `\n` and `\r`, as `str::split` with
/// both would give them, found with memchr (a data line is mostly JSON).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut pos = Some(0);
    std::iter::from_fn(move || {
        let start = pos?;
        let rest = text.as_bytes().get(start..)?;
        let end = memchr::memchr2(b'\n', b'\r', rest).map(|e| start + e);
        pos = end.map(|e| e + 1);
        // Both breaks are ASCII: every cut is on a character boundary.
        text.get(start..end.unwrap_or(text.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_str_split_at_both_breaks() {
        for t in ["", "a", "\n", "a\nb", "a\r\nb\r", "\r\r\n\n", "data: é\rx", "x\n\n"] {
            let want: Vec<&str> = t.split(['\n', '\r']).collect();
            assert_eq!(lines(t).collect::<Vec<_>>(), want, "{t:?}");
        }
    }

    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = SseSplitter::new();
        let mut out = vec![];
        for c in chunks {
            s.push(c, |ev, whole| {
                assert!(whole);
                out.push(String::from_utf8_lossy(ev).into_owned())
            });
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
        s.push(b"data: a\n\ndata: par", |_, _| n += 1);
        assert_eq!(n, 1);
        assert_eq!(s.pending(), b"data: par");
        assert_eq!(s.take_pending(), b"data: par".to_vec());
        assert!(s.pending().is_empty());
    }

    #[test]
    fn an_endless_event_stays_bounded_and_loses_no_byte() {
        let mut s = SseSplitter::with_max_event(64);
        let mut whole = vec![];
        let mut passed = Vec::new();
        let mut input = Vec::new();
        input.extend_from_slice(b"data: a\n\n");
        input.extend_from_slice(b"data: ");
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\r\n\r\ndata: b\n\n");
        for c in input.chunks(7) {
            s.push(c, |ev, w| {
                passed.extend_from_slice(ev);
                if w {
                    whole.push(String::from_utf8_lossy(ev).into_owned());
                }
            });
            assert!(s.pending().len() <= 64 + 7, "held {}", s.pending().len());
        }
        passed.extend(s.take_pending());
        assert_eq!(passed, input, "every byte handed on once, in order");
        assert_eq!(whole, vec!["data: a\n\n", "data: b\n\n"]);
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
        // Bytes that are not UTF-8: read up to them, and said.
        let ev = parse_event(b"data: {\"x\":1}\n: caf\xe9\n\n");
        assert!(ev.cut && ev.data == "{\"x\":1}");
        assert!(!parse_event(b"data: caf\xc3\xa9\n\n").cut);
    }
}
