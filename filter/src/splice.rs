//! JSON objects written member by member from values that are already
//! JSON text (the members the request parser kept raw): every byte of a
//! value stays as it came, and a member name is escaped only where JSON
//! requires it. Every rewrite of a client's body goes through this one
//! writer (a model replaced, a cap added, a prompt rendered, metadata
//! tagged), so none can write an object another reads differently.

/// A JSON object being written.
pub struct Object {
    out: Vec<u8>,
    first: bool,
}

impl Object {
    /// An object with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        let mut out = Vec::with_capacity(n);
        out.push(b'{');
        Object { out, first: true }
    }

    /// Room for `members` as they came, and `extra` bytes more.
    pub fn for_members<'m, V: AsRef<str> + 'm>(members: impl Iterator<Item = (&'m str, V)>, extra: usize) -> Self {
        Self::with_capacity(members.map(|(k, v)| k.len() + v.as_ref().len() + 4).sum::<usize>() + extra)
    }

    /// Writes member `k` with the value text `v`.
    pub fn member(&mut self, k: &str, v: &[u8]) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        name(&mut self.out, k);
        self.out.push(b':');
        self.out.extend_from_slice(v);
    }

    /// The bytes written so far, to go on writing the last member's value
    /// (an array spliced in place).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    pub fn close(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// `k` as a JSON string: as it is when nothing in it needs escaping (the
/// common case, with no allocation), else as serde_json escapes it (a
/// quote, a backslash, a control character).
pub fn name(out: &mut Vec<u8>, k: &str) {
    if k.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.push(b'"');
    } else {
        // (Writing a string to a Vec cannot fail.)
        let _ = serde_json::to_writer(&mut *out, k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_as_serde_json_writes_them_and_values_as_they_came() {
        for k in ["model", "é∑", "a\"b", "back\\slash", "tab\there", "nul\u{0}", "del\u{7f}", ""] {
            let mut o = Object::with_capacity(0);
            o.member(k, b"[1, 2 ]");
            o.member("n", b"1e400");
            let text = String::from_utf8(o.close()).unwrap();
            let expected = format!("{{{}:[1, 2 ],\"n\":1e400}}", serde_json::to_string(k).unwrap());
            assert_eq!(text, expected);
        }
        assert_eq!(Object::with_capacity(0).close(), b"{}");
        let mut o = Object::for_members([("a", "1")].into_iter(), 0);
        o.member("a", b"[");
        o.buffer().extend_from_slice(b"1]");
        assert_eq!(o.close(), b"{\"a\":[1]}");
    }
}
