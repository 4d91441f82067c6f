//! The `log::` facade onto Envoy's log, written here rather than taken from
//! the SDK: `proxy_wasm::set_log_level` installs a logger and a panic hook
//! that `unwrap` the host's answer to every line, so a refused line would
//! trap the VM. This one ignores the answer. Lines go out at Info and above,
//! as before; Envoy's own `--component-log-level wasm:` filters further.

use super::host;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

/// proxy-wasm's levels: trace 0, debug 1, info 2, warn 3, error 4, critical 5.
fn level(of: log::Level) -> u32 {
    match of {
        log::Level::Trace => 0,
        log::Level::Debug => 1,
        log::Level::Info => 2,
        log::Level::Warn => 3,
        log::Level::Error => 4,
    }
}

const CRITICAL: u32 = 5;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A message without arguments is written without a copy.
        match record.args().as_str() {
            Some(text) => host::log(level(record.level()), text),
            None => host::log(level(record.level()), &record.args().to_string()),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once per VM; a second call only sets the level)
/// and a panic hook that names the panic in Envoy's log before the VM
/// traps: nothing in the filter should panic, but if something does, the
/// log says where.
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|info| host::log(CRITICAL, &info.to_string())));
    }
    log::set_max_level(log::LevelFilter::Info);
}
