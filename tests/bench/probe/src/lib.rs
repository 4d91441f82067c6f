//! The probe filter of `make bench`: the least work a filter of Tollgate's
//! kind must do, in three tiers chosen by the plugin configuration (a
//! string), so Tollgate's cost is measured against the platform's, not
//! against nothing:
//!
//! - `noop`: every callback returns Continue;
//! - `route`: buffer the request body, read `model` with serde, set the
//!   cluster header (what body-based routing needs at least);
//! - `full`: `route`, and hold the JSON response, read `usage` with serde,
//!   add one response header (what pricing a response needs at least).
//!
//! Bench-only code (never loaded by Tollgate); compiled for wasm32 only.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Noop,
    Route,
    Full,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { tier: Tier::Noop }) });
}}

struct Root {
    tier: Tier,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        self.tier = match cfg.as_slice() {
            b"route" => Tier::Route,
            b"full" => Tier::Full,
            _ => Tier::Noop,
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { tier: self.tier, stream: false }))
    }
}

struct Probe {
    tier: Tier,
    stream: bool,
}

impl Context for Probe {}

#[derive(serde::Deserialize)]
struct Req {
    model: String,
    #[serde(default)]
    stream: bool,
}

#[derive(serde::Deserialize)]
struct Usage {
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(serde::Deserialize)]
struct Resp {
    #[serde(default)]
    usage: Option<Usage>,
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if self.tier == Tier::Noop || end_of_stream {
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.tier == Tier::Noop {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        if let Ok(r) = serde_json::from_slice::<Req>(&body) {
            self.stream = r.stream;
            // A real router maps the model to a cluster; the bench has one.
            if !r.model.is_empty() {
                self.set_http_request_header("x-tollgate-cluster", Some("openai"));
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if self.tier != Tier::Full || self.stream || end_of_stream {
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.tier != Tier::Full || self.stream {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_response_body(0, size).unwrap_or_default();
        let out = serde_json::from_slice::<Resp>(&body).ok().and_then(|r| r.usage).map(|u| u.completion_tokens).unwrap_or(0);
        self.set_http_response_header("x-probe-output-tokens", Some(&out.to_string()));
        Action::Continue
    }
}
