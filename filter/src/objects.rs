//! OpenAI's stored objects: a response kept by the provider (`store`, the
//! default), read back, deleted or cancelled by its id, with its input
//! items; conversations with their items (the Conversations API the
//! OpenAI Agents SDK's `OpenAIConversationsSession` keeps a session in);
//! files (uploaded to be read by a model: a PDF a response's
//! `input_file` names by `file_id`); and vector stores, the files a
//! response's `file_search` tool searches (`vector_store_ids`); and chat
//! completions sent with `store: true`, read back by id. The SDKs call
//! these as `responses.retrieve` / `delete` / `cancel` /
//! `input_items.list`, `conversations.*`, `files.*`, `vector_stores.*` and
//! `chat.completions.retrieve` / `update` / `delete` / `messages.list`,
//! and a large file sent in parts (`uploads.*`, `upload_file_chunked`:
//! it becomes a file); Anthropic's Files API has the same file paths
//! (`beta.files.*`, a `document` block naming a `file_id`). They are free:
//! no usage, no record, no budget. Batches (`batches.*`) pass the same way,
//! but what a batch ran is charged when it has ended ([`crate::batch`]),
//! and so is a background response read back ([`crate::background`]). Each goes, with the provider's
//! credential, to the provider the configuration names for its format
//! (`stored_objects`: an Anthropic client, one sending `anthropic-version`,
//! to the Anthropic-format one, for files only): a client holding a
//! virtual key could not reach them otherwise (its key is not the
//! provider's).
//!
//! The path sent upstream is rebuilt from parts that were checked (ids of
//! letters, digits, `_` and `-`), never the client's bytes as they came.

use crate::config::{Config, KeyInfo, ProviderFormat};
use crate::errors::GatewayError;

/// Which stored object a path names (the paths of openai/openai-openapi's
/// `openapi.yaml`: Responses, Conversations, Files, Vector stores, Chat
/// completions, Batches, Uploads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// `/responses/{id}`: GET (an ended background response is charged:
    /// [`crate::background`]), DELETE.
    Response,
    /// `/responses/{id}/cancel`: POST (background responses only; answered
    /// with the response, charged as a GET is).
    ResponseCancel,
    /// `/responses/{id}/input_items`: GET.
    ResponseInputItems,
    /// `/conversations`: POST (create, with up to 20 items).
    Conversations,
    /// `/conversations/{id}`: GET, POST (its metadata), DELETE.
    Conversation,
    /// `/conversations/{id}/items`: GET, POST (add items).
    ConversationItems,
    /// `/conversations/{id}/items/{item_id}`: GET, DELETE.
    ConversationItem,
    /// `/files`: POST (upload, a multipart form), GET (list).
    Files,
    /// `/files/{id}`: GET, DELETE.
    File,
    /// `/files/{id}/content`: GET.
    FileContent,
    /// `/vector_stores`: POST (create, with file ids), GET (list).
    VectorStores,
    /// `/vector_stores/{id}`: GET, POST (modify), DELETE.
    VectorStore,
    /// `/vector_stores/{id}/search`: POST (a query; the answer is chunks of the files).
    VectorStoreSearch,
    /// `/vector_stores/{id}/files` and `…/file_batches/{batch_id}/files`: GET (list); the first also POST (attach a file).
    VectorStoreFiles,
    /// `/vector_stores/{id}/files/{file_id}`: GET, POST (its attributes), DELETE.
    VectorStoreFile,
    /// `/vector_stores/{id}/files/{file_id}/content`: GET (the file's parsed text).
    VectorStoreFileContent,
    /// `/vector_stores/{id}/file_batches`: POST (attach files).
    FileBatches,
    /// `/vector_stores/{id}/file_batches/{batch_id}`: GET.
    FileBatch,
    /// `/vector_stores/{id}/file_batches/{batch_id}/cancel`: POST.
    FileBatchCancel,
    /// `/chat/completions/{id}`: GET, POST (its metadata), DELETE (a chat
    /// completion made with `store: true`; the list of them all,
    /// `GET /chat/completions`, is not served: it is every key's).
    ChatCompletion,
    /// `/chat/completions/{id}/messages`: GET.
    ChatCompletionMessages,
    /// `/batches`: POST (create, [`crate::batch`]: its owner written into
    /// its metadata), GET (list).
    Batches,
    /// `/batches/{id}`: GET (an ended batch is charged: [`crate::batch`];
    /// so is each one a list shows, where listing is allowed).
    Batch,
    /// `/batches/{id}/cancel`: POST (answered with the batch, charged as a GET is).
    BatchCancel,
    /// `/uploads`: POST (create: a file to be sent in parts, up to 8 GB).
    Uploads,
    /// `/uploads/{id}/parts`: POST (a part, a multipart form of one `data`).
    UploadParts,
    /// `/uploads/{id}/complete`: POST (the parts in order: the upload becomes a file).
    UploadComplete,
    /// `/uploads/{id}/cancel`: POST.
    UploadCancel,
}

impl Object {
    /// The methods the provider serves on it.
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Object::Response | Object::ConversationItem | Object::File => &["GET", "DELETE"],
            Object::ResponseCancel | Object::Conversations | Object::VectorStoreSearch | Object::FileBatches | Object::FileBatchCancel | Object::BatchCancel => &["POST"],
            Object::Uploads | Object::UploadParts | Object::UploadComplete | Object::UploadCancel => &["POST"],
            Object::ResponseInputItems | Object::FileContent | Object::VectorStoreFileContent | Object::FileBatch | Object::ChatCompletionMessages | Object::Batch => &["GET"],
            Object::Conversation | Object::VectorStore | Object::VectorStoreFile | Object::ChatCompletion => &["GET", "POST", "DELETE"],
            Object::ConversationItems | Object::Files | Object::VectorStores | Object::VectorStoreFiles | Object::Batches => &["GET", "POST"],
        }
    }

    /// Whether a request of `method` sends text a model will read
    /// (conversation items, metadata): what request guardrails look at.
    pub fn sends_content(self, method: &str) -> bool {
        method == "POST" && matches!(self, Object::Conversations | Object::Conversation | Object::ConversationItems | Object::VectorStoreSearch)
    }

    /// A file's path: Anthropic's Files API has the same paths
    /// (`/v1/files…`), so a request of Anthropic's (`anthropic-version`
    /// sent, as its SDKs always do) is not OpenAI's to have.
    pub fn is_file(self) -> bool {
        matches!(self, Object::Files | Object::File | Object::FileContent)
    }

    /// The format of the provider that keeps it for a client of
    /// Anthropic's (`anthropic`) or not; `None`: no provider does.
    pub fn format(self, anthropic: bool) -> Option<ProviderFormat> {
        match (anthropic, self.is_file()) {
            (false, _) => Some(ProviderFormat::Openai),
            (true, true) => Some(ProviderFormat::Anthropic),
            (true, false) => None,
        }
    }

    /// Whether a request of `method` lists every object of its kind the
    /// provider keeps (files, vector stores): every key's, under the one
    /// provider key, where each key should reach only the ids it was told.
    pub fn lists_all(self, method: &str) -> bool {
        method == "GET" && matches!(self, Object::Files | Object::VectorStores | Object::Batches)
    }

    /// Whether a request of `method` uploads content the guardrails
    /// cannot read (a file, in a multipart form), or starts an upload
    /// whose parts will be such content.
    pub fn uploads(self, method: &str) -> bool {
        method == "POST" && matches!(self, Object::Files | Object::Uploads | Object::UploadParts)
    }

    /// Whether the answer to `method` carries text a model read or wrote:
    /// a response's output, input items, conversation items, a file's bytes.
    pub fn answers_content(self, method: &str) -> bool {
        match self {
            Object::Response | Object::ConversationItem => method == "GET",
            Object::ResponseCancel | Object::ResponseInputItems | Object::FileContent => true,
            Object::ConversationItems | Object::VectorStoreSearch | Object::VectorStoreFileContent => true,
            Object::Conversations | Object::Conversation | Object::Files | Object::File => false,
            Object::VectorStores | Object::VectorStore | Object::VectorStoreFiles | Object::VectorStoreFile => false,
            Object::FileBatches | Object::FileBatch | Object::FileBatchCancel => false,
            // (Its metadata updated, a completion comes back whole.)
            Object::ChatCompletion => method != "DELETE",
            Object::ChatCompletionMessages => true,
            Object::Batches | Object::Batch | Object::BatchCancel => false,
            Object::Uploads | Object::UploadParts | Object::UploadComplete | Object::UploadCancel => false,
        }
    }

    /// Whether the request creates a batch (its body rewritten: [`crate::batch::tag`]).
    pub fn creates_batch(self, method: &str) -> bool {
        method == "POST" && self == Object::Batches
    }

    /// What the answer is read for: a batch object (or a list of them)
    /// that may carry an ended batch's charge ([`crate::batch`]), a
    /// response that may carry an ended background response's
    /// ([`crate::background`]).
    pub fn charged(self, method: &str) -> Option<crate::owned::Kind> {
        use crate::owned::Kind;
        match (self, method) {
            (Object::Batch | Object::Batches, "GET") | (Object::BatchCancel, "POST") => Some(Kind::Batch),
            (Object::Response, "GET") | (Object::ResponseCancel, "POST") => Some(Kind::Response),
            _ => None,
        }
    }
}

/// An object id as OpenAI writes them (`resp_…`, `conv_…`, `msg_…`, `file-…`).
pub fn is_id(s: &str) -> bool {
    (1..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The object a path names below the API's version (`/responses/resp_1`).
fn below_version(rest: &str) -> Option<Object> {
    let segs: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    let ok = |ids: &[&str]| ids.iter().all(|i| is_id(i));
    Some(match segs.as_slice() {
        ["responses", r] if ok(&[r]) => Object::Response,
        ["responses", r, "cancel"] if ok(&[r]) => Object::ResponseCancel,
        ["responses", r, "input_items"] if ok(&[r]) => Object::ResponseInputItems,
        ["conversations"] => Object::Conversations,
        ["conversations", c] if ok(&[c]) => Object::Conversation,
        ["conversations", c, "items"] if ok(&[c]) => Object::ConversationItems,
        ["conversations", c, "items", i] if ok(&[c, i]) => Object::ConversationItem,
        ["files"] => Object::Files,
        ["files", f] if ok(&[f]) => Object::File,
        ["files", f, "content"] if ok(&[f]) => Object::FileContent,
        ["vector_stores"] => Object::VectorStores,
        ["vector_stores", v] if ok(&[v]) => Object::VectorStore,
        ["vector_stores", v, "search"] if ok(&[v]) => Object::VectorStoreSearch,
        ["vector_stores", v, "files"] if ok(&[v]) => Object::VectorStoreFiles,
        ["vector_stores", v, "files", f] if ok(&[v, f]) => Object::VectorStoreFile,
        ["vector_stores", v, "files", f, "content"] if ok(&[v, f]) => Object::VectorStoreFileContent,
        ["vector_stores", v, "file_batches"] if ok(&[v]) => Object::FileBatches,
        ["vector_stores", v, "file_batches", b] if ok(&[v, b]) => Object::FileBatch,
        ["vector_stores", v, "file_batches", b, "cancel"] if ok(&[v, b]) => Object::FileBatchCancel,
        ["vector_stores", v, "file_batches", b, "files"] if ok(&[v, b]) => Object::VectorStoreFiles,
        ["chat", "completions", c] if ok(&[c]) => Object::ChatCompletion,
        ["chat", "completions", c, "messages"] if ok(&[c]) => Object::ChatCompletionMessages,
        ["batches"] => Object::Batches,
        ["batches", b] if ok(&[b]) => Object::Batch,
        ["batches", b, "cancel"] if ok(&[b]) => Object::BatchCancel,
        ["uploads"] => Object::Uploads,
        ["uploads", u, "parts"] if ok(&[u]) => Object::UploadParts,
        ["uploads", u, "complete"] if ok(&[u]) => Object::UploadComplete,
        ["uploads", u, "cancel"] if ok(&[u]) => Object::UploadCancel,
        _ => return None,
    })
}

/// The object a client's path (no query, no trailing `/`) names, and its
/// part below the version: `/v1/…` or bare (`/responses/…`), or Azure
/// OpenAI's `/openai/v1/…` and `/openai/…`.
pub fn locate(p: &str) -> Option<(Object, &str)> {
    let rest = ["/openai/v1", "/openai", "/v1"].iter().find_map(|pre| p.strip_prefix(pre).filter(|r| r.starts_with('/'))).unwrap_or(p);
    below_version(rest).map(|o| (o, rest))
}

/// What to do with a stored-object request: the headers that send it to
/// the provider, and whether its body must pass the guardrails first. A
/// file upload under a policy that blocks or redacts is refused: its bytes
/// (a PDF, an image) are not text the scan reads.
#[derive(Debug)]
pub struct Plan {
    pub object: Object,
    pub provider: String,
    pub headers: Vec<(String, String)>,
    pub scan: bool,
    /// A batch created: its body gets its owner ([`crate::batch::tag`]).
    pub creates_batch: bool,
    /// The answer is read for a charge: a batch's, a background response's.
    pub charged: Option<crate::owned::Kind>,
    /// An upload under a policy that blocks or redacts: read whole, sent
    /// only when it is a batch file, scanned line by line ([`crate::batch::guard_lines`]).
    pub scan_upload: bool,
    /// A stored response's stream resumed after this event
    /// (`starting_after`): asked from its start, the events up to it read
    /// and not passed on.
    pub skip_through: Option<u64>,
}

impl Plan {
    /// Request headers removed: an object read for a charge is read whole,
    /// so no part of it (`range`) and no "not modified" answer (conditional
    /// headers) may stand in for it.
    pub fn remove(&self) -> &'static [&'static str] {
        match self.charged {
            // (A stream read back is filtered event by event: it must come uncompressed.)
            Some(crate::owned::Kind::Response) => WHOLE_RESPONSE,
            Some(_) => WHOLE_ANSWER,
            None => &[],
        }
    }

    /// Where the request goes, for the guardrails and the record: the
    /// provider, no route (a stored object names none) and no model.
    pub fn target(&self) -> crate::route::Target {
        crate::route::Target { provider: self.provider.clone(), route: String::new(), upstream_model: String::new(), advisor: None }
    }
}

/// Plans a stored-object request of `key`; `Err` is the answer instead.
/// `guard`: the guardrail policy in force, if any; `anthropic`: the client
/// is Anthropic's (it sent `anthropic-version`).
pub fn plan(cfg: &Config, key: &KeyInfo, path: &str, method: &str, anthropic: bool, guard: Option<&crate::guard::Policy>) -> Result<Plan, GatewayError> {
    let p = path.split(['?', '#']).next().unwrap_or("");
    let (object, rest) = locate(p.strip_suffix('/').unwrap_or(p)).ok_or_else(|| GatewayError::not_found("No stored object is named by this path."))?;
    let (index, provider) = object
        .format(anthropic)
        .and_then(|f| cfg.stored_objects(f))
        .ok_or_else(|| GatewayError::not_found("These stored objects are not served: the configuration names no 'stored_objects' provider for them."))?;
    if !object.methods().contains(&method) {
        return Err(GatewayError::method_not_allowed(format!("This path takes {}.", object.methods().join(" or "))));
    }
    if !cfg.reaches(key, index) {
        return Err(GatewayError::forbidden(
            "provider_not_allowed",
            format!("This key may use no model of provider '{}', which keeps these stored objects.", provider.name),
        ));
    }
    if object.lists_all(method) && !cfg.list_stored_objects {
        return Err(GatewayError::forbidden(
            "listing_not_allowed",
            "Listing files, vector stores or batches would show every key's, kept under the provider's one key: name them by the ids you were given (the configuration's list_stored_objects allows listing).",
        ));
    }
    if let Some(g) = guard.filter(|g| g.scans_answers() && object.answers_content(method)) {
        return Err(GatewayError::forbidden(
            "stored_content_guarded",
            format!(
                "Guardrail policy '{}' scans answers, and stored content (a response, items, a file, search results) would come back unscanned: read a response in the answer that made it.",
                g.version
            ),
        ));
    }
    let who = crate::guard::Subject { key: &key.id, project: &key.project, team: &key.team, route: "" };
    // An upload under a policy that acts: only an OpenAI batch file (JSON
    // Lines of requests) sent whole is text the scan reads; which it is,
    // the form says. A file sent in parts (the Uploads API) is not: a part
    // is any slice of it, a line cut anywhere.
    let scan_upload = match guard.filter(|g| object.uploads(method) && g.acts_for(who)) {
        Some(g) if anthropic || object != Object::Files => return Err(unscannable(g, &provider.name)),
        Some(_) => true,
        None => false,
    };
    let (query, skip_through) = match (object, method) {
        (Object::Response, "GET") => resumed(path)?,
        _ => (crate::request::upstream_query(path), None),
    };
    let mut headers = vec![
        (":path".to_string(), format!("{}{rest}{query}", provider.path_prefix)),
        (":authority".to_string(), provider.host.clone()),
        (cfg.cluster_header.clone(), provider.cluster.clone()),
    ];
    // (An Anthropic client sent its own `anthropic-version` and `anthropic-beta`: they go on.)
    match (&provider.api_key, provider.format) {
        (Some(k), ProviderFormat::Anthropic) => headers.push(("x-api-key".to_string(), k.expose().to_string())),
        (Some(k), _) => headers.push(("authorization".to_string(), format!("Bearer {}", k.expose()))),
        (None, _) => {}
    }
    if object.creates_batch(method) {
        crate::batch::allowed(key)?;
    }
    Ok(Plan {
        object,
        provider: provider.name.clone(),
        headers,
        scan: guard.is_some() && object.sends_content(method),
        creates_batch: object.creates_batch(method),
        charged: object.charged(method),
        scan_upload,
        skip_through,
    })
}

/// A stored response's read: its query without `starting_after`, and
/// that number. A stream resumed after an event is asked from its start:
/// the events before it (the response's model, its owner) are read, and
/// not passed on ([`crate::owned::Answer`]); otherwise a client could take
/// a background response's output from a resumed stream that it leaves
/// before the end, with nothing to say what it was or whose.
fn resumed(path: &str) -> Result<(String, Option<u64>), GatewayError> {
    let query = crate::request::upstream_query(path);
    let mut kept = Vec::new();
    let mut after = None;
    for kv in query.trim_start_matches('?').split('&').filter(|kv| !kv.is_empty()) {
        let (name, v) = kv.split_once('=').unwrap_or((kv, ""));
        if name != "starting_after" {
            kept.push(kv);
            continue;
        }
        let n = v.parse::<u64>().ok().filter(|_| after.is_none()).ok_or_else(|| {
            GatewayError::bad_request("invalid_type", "'starting_after' must be given once, as a non-negative integer.").with_param("starting_after")
        })?;
        after = Some(n);
    }
    let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    Ok((query, after))
}

/// The same for a stored response, and its coding: a stream read back is
/// filtered event by event.
const WHOLE_RESPONSE: &[&str] = &["range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "accept-encoding"];

/// What a client could send to get an object read for a charge in parts or not at all.
const WHOLE_ANSWER: &[&str] = &["range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"];

/// The refusal of an upload the guardrails cannot read (any file but a
/// batch's JSON Lines sent whole) under a policy that blocks or redacts.
pub fn unscannable(g: &crate::guard::Policy, provider: &str) -> GatewayError {
    GatewayError::forbidden(
        "content_unscannable",
        format!(
            "Guardrail policy '{}' blocks or redacts data classes, and an uploaded file cannot be checked for them (only a batch's JSON Lines, purpose 'batch', sent whole to POST /v1/files, can), so it is not sent to provider '{provider}'.",
            g.version
        ),
    )
}

#[cfg(test)]
mod tests;
