//! Static things: the dashboard page and the filter module.

use super::*;

/// The dashboard: one self-contained page (no CDN); its data comes from the
/// reporting API with the admin token the user enters (kept in the tab's
/// session storage, or passed once as `#token=` in the URL fragment, which
/// never reaches the server's logs).
/// The filter module, for Envoys that fetch it over HTTP (Istio: the
/// EnvoyFilter's remote code and the bootstrap's WasmService). Not secret.
pub(super) async fn filter_wasm(State(st): State<Arc<AppState>>) -> Response {
    match &st.settings.filter_wasm {
        Some((bytes, sha)) => {
            ([("content-type", "application/wasm"), ("x-tollgate-sha256", sha.as_str())], bytes.clone()).into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found_error", "not_found", "no filter module is served here (set TOLLGATE_FILTER_WASM)")
            .into_response(),
    }
}

pub(super) async fn dashboard() -> Response {
    (
        [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-cache"), ("x-frame-options", "DENY")],
        include_str!("../dashboard.html"),
    )
        .into_response()
}

// ---- budget increase requests ----------------------------------------------
