//! Host calls that cannot panic.
//!
//! The proxy-wasm SDK's helpers `panic!` on any status they did not expect
//! and unwrap UTF-8 on header maps; a panic kills the VM. Every call the
//! request path makes on headers, bodies, properties and local replies goes
//! through these raw ABI calls instead: bytes in, bytes out, errors ignored
//! or returned, never a trap; so do shared data, metrics, the clock and
//! the plugin configuration.
//! So do the usage queue and the tick period (the SDK `panic!`s on a
//! status it did not list; the request path hands every record to the
//! queue), and so do log lines ([`log`], under the `log::` facade in
//! `logger.rs`). HTTP calls stay with the SDK: its dispatcher must know
//! each call's token to deliver the answer, and its `dispatch_http_call`
//! returns as errors the only refusals Envoy's `Context::httpCall` gives
//! (bad argument, internal failure; source/extensions/common/wasm/context.cc).

use std::ptr::null_mut;

use crate::hostmap;

pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const REQUEST_BODY: u32 = 0;
pub const RESPONSE_BODY: u32 = 1;
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

const OK: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(map_type: u32, k: *const u8, ks: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, k: *const u8, ks: usize) -> u32;
    fn proxy_add_header_map_value(map_type: u32, k: *const u8, ks: usize, v: *const u8, vs: usize) -> u32;
    fn proxy_get_buffer_bytes(buffer_type: u32, start: usize, max: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, data: *const u8, size: usize) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(k: *const u8, ks: usize, data: *mut *mut u8, size: *mut usize, cas: *mut u32) -> u32;
    fn proxy_set_shared_data(k: *const u8, ks: usize, v: *const u8, vs: usize, cas: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(vm_id: *const u8, vm_id_size: usize, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_enqueue_shared_queue(id: u32, data: *const u8, size: usize) -> u32;
    fn proxy_dequeue_shared_queue(id: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
}

/// Writes a line to Envoy's log at `level` (0 trace … 5 critical); a
/// refusal is ignored (the SDK's logger `unwrap`s it: a trap).
pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Envoy's clock in milliseconds since the epoch (0 if the host refuses:
/// the SDK's `get_current_time` panics on any status but OK, and every
/// request reads the clock).
pub fn now_ms() -> u64 {
    let mut nanos = 0u64;
    // SAFETY: an out-pointer to a local.
    match unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } {
        OK => nanos / 1_000_000,
        _ => 0,
    }
}

/// Makes later host calls act on another context of this VM (a request the
/// root context must answer). False when that context is gone.
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: a plain value.
    unsafe { proxy_set_effective_context(context_id) == OK }
}

/// Calls `on_tick` every `ms` milliseconds (false if the host refuses).
pub fn set_tick_period(ms: u32) -> bool {
    // SAFETY: a plain value.
    unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
}

/// Registers this VM's shared queue `name`: its id.
pub fn register_queue(name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointer to a local and a live slice.
    (unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) } == OK).then_some(id)
}

/// The id of the queue `name` registered by VM `vm_id` (None: not yet, or refused).
pub fn resolve_queue(vm_id: &str, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointer to a local and live slices.
    (unsafe { proxy_resolve_shared_queue(vm_id.as_ptr(), vm_id.len(), name.as_ptr(), name.len(), &mut id) } == OK).then_some(id)
}

/// Hands `value` to the queue; false when it is gone or the host refuses.
pub fn enqueue(id: u32, value: &[u8]) -> bool {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) == OK }
}

/// The next item of the queue (None: empty, gone, or refused).
pub fn dequeue(id: u32) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: pointers to locals.
    let status = unsafe { proxy_dequeue_shared_queue(id, &mut data, &mut size) };
    let bytes = owned(data, size);
    (status == OK && !data.is_null()).then_some(bytes)
}

const CAS_MISMATCH: u32 = 8;

/// A shared-data value and its compare-and-swap token.
pub fn shared(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: pointers to locals and a live slice.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    let bytes = owned(data, size);
    if status == OK {
        (Some(bytes), Some(cas))
    } else {
        (None, None)
    }
}

/// Result of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetShared {
    Ok,
    /// Someone wrote in between: read again and retry.
    CasMismatch,
    Failed,
}

pub fn set_shared(key: &str, value: &[u8], cas: Option<u32>) -> SetShared {
    // SAFETY: pointers and lengths of live slices.
    match unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) } {
        OK => SetShared::Ok,
        CAS_MISMATCH => SetShared::CasMismatch,
        _ => SetShared::Failed,
    }
}

/// 0 counter, 1 gauge, 2 histogram.
pub fn define_metric(metric_type: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointer to a local and a live slice.
    (unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) } == OK).then_some(id)
}

pub fn increment_metric(id: u32, by: u64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX)) };
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_record_metric(id, value) };
}

/// Takes ownership of memory the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a `Vec<u8>` with capacity `size`).
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into a buffer the SDK allocated
    // as a Vec<u8> of exactly that capacity and forgot.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub fn header_pairs(map_type: u32) -> Vec<hostmap::Pair> {
    hostmap::decode(&header_map(map_type))
}

/// A header map as the host serialized it: read its pairs with
/// [`hostmap::pairs`] (borrowed, so only what is kept is copied).
pub fn header_map(map_type: u32) -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: out-pointers to locals; the host fills them or leaves them.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    let bytes = owned(data, size);
    if status != OK {
        return Vec::new();
    }
    bytes
}

/// Sets (or with `None` removes) a header. A value that is not safe in a
/// header (control characters, non-ASCII) is never written.
pub fn set_header(map_type: u32, name: &str, value: Option<&str>) -> bool {
    // SAFETY: pointers and lengths of live slices.
    let status = match value {
        Some(v) if crate::text::header_safe(v) && crate::text::header_safe(name) => unsafe {
            proxy_replace_header_map_value(map_type, name.as_ptr(), name.len(), v.as_ptr(), v.len())
        },
        Some(_) => return false,
        None => unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) },
    };
    status == OK
}

/// Adds a header the map is known not to have (cheaper than a replace,
/// which looks for it first). Values as in [`set_header`].
pub fn add_header(map_type: u32, name: &str, value: &str) -> bool {
    if !(crate::text::header_safe(value) && crate::text::header_safe(name)) {
        return false;
    }
    // SAFETY: pointers and lengths of live slices.
    unsafe { proxy_add_header_map_value(map_type, name.as_ptr(), name.len(), value.as_ptr(), value.len()) == OK }
}

pub fn buffer(buffer_type: u32, start: usize, max: usize) -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as above.
    let status = unsafe { proxy_get_buffer_bytes(buffer_type, start, max, &mut data, &mut size) };
    let bytes = owned(data, size);
    if status == OK {
        bytes
    } else {
        Vec::new()
    }
}

pub fn set_buffer(buffer_type: u32, start: usize, size: usize, value: &[u8]) -> bool {
    // SAFETY: pointer and length of a live slice.
    unsafe { proxy_set_buffer_bytes(buffer_type, start, size, value.as_ptr(), value.len()) == OK }
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let p = hostmap::property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: as above.
    let status = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    let bytes = owned(data, size);
    (status == OK).then_some(bytes)
}

pub fn set_property(path: &[&str], value: &[u8]) -> bool {
    let p = hostmap::property_path(path);
    // SAFETY: pointers and lengths of live slices.
    unsafe { proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len()) == OK }
}

/// Sends a local reply. Headers that are not header-safe are left out.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let safe: Vec<(&str, &str)> =
        headers.iter().copied().filter(|(k, v)| crate::text::header_safe(k) && crate::text::header_safe(v)).collect();
    let h = hostmap::encode(&safe);
    let details = b"tollgate";
    // SAFETY: pointers and lengths of live slices.
    unsafe {
        proxy_send_local_response(status, details.as_ptr(), details.len(), body.as_ptr(), body.len(), h.as_ptr(), h.len(), -1)
            == OK
    }
}
