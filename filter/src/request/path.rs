//! A path as a lenient server would read it. Envoy forwards `:path` as the
//! client wrote it (the listeners here do not set `normalize_path` or
//! `merge_slashes`), and servers in front of providers often normalise:
//! nginx merges slashes, many frameworks decode escapes, some drop
//! `;params` or ignore case. A path that names a gateway endpoint only
//! after such a reading is refused instead of passed as "other".

/// Whether `path` (without its query) is not an endpoint as written but
/// `endpoint` finds one in its normalised reading.
pub fn disguises_endpoint(path: &str, endpoint: impl Fn(&str) -> super::Endpoint) -> bool {
    let n = normalised(path);
    [n.clone(), n.to_ascii_lowercase()].iter().any(|p| endpoint(p) != super::Endpoint::Other)
}

/// Every percent escape decoded (repeatedly, so `%252F` too), backslashes
/// read as slashes, each segment cut at `;`, empty and `.` segments
/// dropped, `..` taking the one before it away, no trailing slash.
fn normalised(path: &str) -> String {
    let mut p = path.to_string();
    // Bounded: each round that changes something makes the path shorter.
    for _ in 0..4 {
        let d = percent_decoded(&p);
        if d == p {
            break;
        }
        p = d;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in p.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(p.len());
    for s in segments {
        out.push('/');
        out.push_str(s);
    }
    out
}

fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::{classify_path, Api, Endpoint};
    use super::normalised;

    #[test]
    fn a_path_a_server_would_normalise_into_an_endpoint_is_refused() {
        for p in [
            "/v1//chat/completions",
            "//v1/chat/completions",
            "/v1/chat/completions//",
            "/v1/./chat/completions",
            "/v1/x/../chat/completions",
            "/v1/chat%2Fcompletions",
            "/v1/chat%252Fcompletions",
            "/v1/%63hat/completions",
            "/v1/chat/completions;jsessionid=1",
            "/v1\\chat\\completions",
            "/V1/Chat/Completions",
            "/v1/messages/./count_tokens?beta=true",
            "/v1/MESSAGES",
            "/v1beta/models/gemini-2.5-flash%3AgenerateContent",
            "/v1/models/gemini-2.5-flash%3astreamGenerateContent",
            "/v1beta/models%2Fgemini-2.5-flash:countTokens",
            "/v1beta//models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1/responses/",
            "/v1/embeddings/.",
        ] {
            let e = classify_path(p);
            assert!(e == Endpoint::Disguised || p.ends_with("/v1/responses/"), "{p}: {e:?}");
        }
        // The one trailing slash a client library may add stays the endpoint itself.
        assert_eq!(classify_path("/v1/responses/"), Endpoint::Chat(Api::OpenAiResponses));
    }

    #[test]
    fn other_paths_stay_other_and_hostile_escapes_never_panic() {
        for p in [
            "/v1/audio/voices",
            "/v1/chat/completions/chatcmpl-1/other",
            "/v1/responses/resp_1/input_tokens/x",
            "/v1/messages/batches",
            "/v1/messages/batches/msgbatch_1/results",
            "/",
            "",
            "%",
            "/%zz/%",
            "/%ff%fe/chat",
            "/v1/chat/completions/..%2F..",
        ] {
            assert_eq!(classify_path(p), Endpoint::Other, "{p}");
        }
        assert_eq!(normalised("/a/%2E%2E/b/%2e/c;x=1/"), "/b/c");
        assert_eq!(normalised("/../../a"), "/a");
        assert_eq!(normalised("/%2525252525"), "/%25", "decoding stops after four rounds");
    }
}
