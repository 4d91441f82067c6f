//! A stored response or conversation ([`crate::objects`]): sent on with
//! the provider's key, its body (conversation items) first through the
//! guardrails when a policy is in force. Free: no budget, no record (but
//! for a guardrail refusal, which the audit must see).

use proxy_wasm::types::Action;

use super::super::host::{self, REQUEST_BODY};
use super::super::{awaiting_body, synced};
use super::{Phase, TollgateHttp};
use crate::config::{Config, KeyInfo};
use crate::objects::Plan;
use crate::request::Api;

impl TollgateHttp {
    pub(super) fn stored_object(&mut self, cfg: &Config, key: &KeyInfo, method: &str, end_of_stream: bool) -> Action {
        // (As a count is: a refusal leaves no record unless the guardrails made it.)
        self.counting = true;
        let policy = synced::guard_policy(cfg);
        let plan = match crate::objects::plan(cfg, key, &self.path, method, self.headers.has_anthropic_version, policy.as_deref()) {
            Ok(p) => p,
            Err(e) => return self.reject(e),
        };
        for h in std::mem::take(&mut self.headers.to_remove) {
            self.set_request_header(&h, None);
        }
        if plan.scan && !end_of_stream {
            self.api = Some(Api::OpenAiResponses);
            self.object_plan = Some(plan);
            self.phase = Phase::AwaitBody;
            awaiting_body(self.context_id, self.start_ms);
            return Action::Pause;
        }
        self.send_object(&plan)
    }

    /// The body of a stored-object request that sends content: what the
    /// guardrails let go (a redacted body in place of the client's).
    pub(super) fn stored_object_body(&mut self, cfg: &Config, plan: Plan, body_size: usize) -> Action {
        let (Some(key), Some(policy)) = (self.key.clone(), synced::guard_policy(cfg)) else {
            return self.send_object(&plan);
        };
        let (body, decoded) = match self.whole_body(cfg, body_size) {
            Ok(b) => b,
            Err(e) => return self.reject(e),
        };
        let target = crate::route::Target { provider: plan.provider.clone(), route: String::new(), upstream_model: String::new(), advisor: None };
        let who = crate::guard::Subject { key: &key.id, project: &self.project, team: &key.team, route: "" };
        let (outcome, error) = crate::guard::decide(&policy, who, &target, &body, &mut crate::guard::Placeholders::default());
        self.guardrails = outcome.record;
        if let Some(e) = error {
            self.target = Some(target);
            return self.reject(e);
        }
        let new_body = outcome.body.or(decoded.then_some(body));
        if let Some(b) = &new_body {
            host::set_buffer(REQUEST_BODY, 0, body_size, b);
            self.set_request_header("content-length", Some(&b.len().to_string()));
            if decoded {
                self.set_request_header("content-encoding", None);
            }
        }
        self.send_object(&plan)
    }

    fn send_object(&mut self, plan: &Plan) -> Action {
        for (name, value) in &plan.headers {
            self.set_request_header(name, Some(value));
        }
        log::debug!("[{}] stored object {:?} -> provider={}", self.context_id, plan.object, plan.provider);
        self.phase = Phase::Counting;
        Action::Continue
    }
}
