//! Request ids made by Tollgate.
//!
//! The usage record's id is the control service's idempotency key, so it
//! must never come from the client (60 requests reusing one `x-request-id`
//! would count once) and must be unique across workers, restarts and Envoys:
//!
//! `tg-<node>-<vm start ms, base 36>-<vm number>-<counter, base 36>`
//!
//! - node: 8 hex digits of SHA3-256 of the Envoy's node id (`--service-node`)
//! - vm number: drawn once per VM from a shared-data counter (compare-and-
//!   swap), so two workers of one Envoy never share it
//! - vm start ms: when the VM drew it, so a restarted Envoy (whose shared
//!   data starts empty) does not repeat its predecessor's ids
//! - counter: per VM, one per request

/// Makes the ids of one VM.
#[derive(Debug, Clone)]
pub struct IdMaker {
    prefix: String,
    next: u64,
}

impl IdMaker {
    pub fn new(node_id: &str, vm_start_ms: u64, vm_number: u64) -> Self {
        let node = crate::keys::hash_key(node_id);
        let node = node.get(..8).unwrap_or("00000000");
        IdMaker { prefix: format!("tg-{node}-{}-{}-", base36(vm_start_ms), base36(vm_number)), next: 0 }
    }

    pub fn next_id(&mut self) -> String {
        self.next = self.next.wrapping_add(1);
        format!("{}{}", self.prefix, base36(self.next))
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(13);
    loop {
        out.push(DIGITS.get((n % 36) as usize).copied().unwrap_or(b'0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The client's `x-request-id`, kept for correlation when it is clean:
/// 1 to 128 visible ASCII characters once trimmed (it is copied into
/// records, logs and CSVs); anything else is left out, never refused.
pub fn client_request_id(v: Option<&[u8]>) -> Option<String> {
    let s = std::str::from_utf8(v?).ok()?.trim();
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (0x21..0x7f).contains(&b))).then(|| s.to_string())
}

/// The request's session: the client's own `x-tollgate-session`, else the
/// one Claude Code sends every request (`x-claude-code-session-id`, which
/// its gateway contract offers a gateway "to group a session's
/// requests"), each kept only when clean as [`client_request_id`].
pub fn session_id(own: Option<&[u8]>, claude_code: Option<&[u8]>) -> Option<String> {
    client_request_id(own).or_else(|| client_request_id(claude_code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn unique_across_vms_restarts_and_nodes() {
        let mut seen = HashSet::new();
        for (node, start, vm) in [("a", 1000, 0), ("a", 1000, 1), ("a", 1001, 0), ("b", 1000, 0)] {
            let mut m = IdMaker::new(node, start, vm);
            for _ in 0..1000 {
                let id = m.next_id();
                assert!(id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
                assert!(seen.insert(id));
            }
        }
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert!(base36(u64::MAX).len() <= 13);
    }

    #[test]
    fn client_ids_are_kept_only_when_clean() {
        assert_eq!(client_request_id(Some(b" abc-1 ")), Some("abc-1".into()));
        assert_eq!(client_request_id(Some(b"caf\xe9")), None);
        assert_eq!(client_request_id(Some(b"a\r\nb")), None);
        assert_eq!(client_request_id(Some("x".repeat(129).as_bytes())), None);
        // The client's own session header first; Claude Code's when it has none (or not a clean one).
        let cc = Some(&b"3f0c5b1e-7d2a-4c55-9a7e-1b2c3d4e5f60"[..]);
        assert_eq!(session_id(Some(b"run-42"), cc).as_deref(), Some("run-42"));
        assert_eq!(session_id(None, cc).as_deref(), Some("3f0c5b1e-7d2a-4c55-9a7e-1b2c3d4e5f60"));
        assert_eq!(session_id(Some(b"\x1b[31m"), cc).as_deref(), Some("3f0c5b1e-7d2a-4c55-9a7e-1b2c3d4e5f60"));
        assert_eq!(session_id(Some(b"a b"), Some(b"caf\xe9")), None);
    }
}
