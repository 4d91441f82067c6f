//! What a request cost: accounted once its answer is read (or cut), the
//! budget settled, the record shipped, logged and counted.

use super::super::host;
use super::super::{enqueue_record, now_ms, record_metrics, HostCounters};
use super::{Phase, TollgateHttp};
use crate::admission;
use crate::budget::Amount;
use crate::reader::Reader;
use crate::record::{account, Observed, Outcome, Termination, UsageRecord, UsageSource, RECORD_VERSION};
use crate::request::{Api, ChatRequest};
use crate::usage::Usage;
use tollgate_protocol::scope::Scope;

impl TollgateHttp {
    pub(super) fn build_record(
        &self,
        usage: Usage,
        source: UsageSource,
        outcome: Outcome,
        error_code: Option<String>,
        cost_micros: u64,
        priced: bool,
    ) -> UsageRecord {
        let key = self.key.as_deref();
        let end = now_ms();
        let model_served = match &self.reader {
            Reader::Stream { tracker, .. } => tracker.summary().model,
            _ => None,
        }
        .or_else(|| self.response_info.as_ref().and_then(|r| r.model.clone()));
        UsageRecord {
            v: RECORD_VERSION,
            id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            session_id: self.session_id.clone(),
            ts_ms: self.start_ms,
            key_id: key.map(|k| k.id.clone()).unwrap_or_default(),
            key_hash: key.map(|k| k.key_hash.clone()).unwrap_or_default(),
            team: key.map(|k| k.team.clone()).unwrap_or_default(),
            project: self.project.clone(),
            feature: self.feature.clone(),
            prompt_version: self.prompt_version.clone(),
            user: self.chat.as_ref().and_then(|c| c.user.clone()),
            tags: key.map(|k| k.tags.clone()).unwrap_or_default(),
            api: self.api.unwrap_or(Api::OpenAiChat),
            provider: self.target.as_ref().map(|t| t.provider.clone()),
            route: self.target.as_ref().map(|t| t.route.clone()),
            model_requested: self.chat.as_ref().map(|c| c.model.clone()),
            model_upstream: self.target.as_ref().map(|t| t.upstream_model.clone()),
            model_served,
            stream: self.chat.as_ref().is_some_and(|c| c.stream),
            // What the client got (the provider's status is what is accounted).
            status: self.replaced.map_or(self.status, |r| r.0),
            outcome,
            // (Why the answer read says, else why the client did not get it.)
            error_code: error_code.or_else(|| self.withheld().map(str::to_string)),
            usage,
            usage_source: source,
            cost_micros,
            cache_savings_micros: 0,
            priced,
            latency_ms: end.saturating_sub(self.start_ms),
            ttfb_ms: self.ttfb_ms,
            budget_scopes: match &self.denied_scope {
                Some(d) => vec![d.clone()],
                None => self.reservations.iter().map(|r| Scope::new(r.scope_type, &r.scope_id)).collect(),
            },
            budget_decision: self.budget_decision,
            guardrails: self.guardrails_for_record(),
            cache_miss: None,
            json_check: self.json_check.clone(),
            attempts: self.attempts.clone(),
            routed_by: self.routed_by.clone(),
            service_tier: self.chat.as_ref().and_then(|c| c.premium.tier),
            inference_geo: self.chat.as_ref().and_then(|c| c.premium.geo),
            capture: self.capture.clone().filter(|c| !c.response.is_empty()),
        }
        .bounded()
    }

    /// Accounts for the response and emits the usage record (once).
    pub(super) fn settle(&mut self, termination: Termination) -> Option<UsageRecord> {
        if self.phase != Phase::Upstream {
            return None;
        }
        let cfg = self.config.clone()?;
        let target = self.target.as_ref()?;
        let (stream, body_note, body_bytes) = self.reader.observed().unwrap_or((None, self.body_note, self.body_bytes));
        let speech = self.chat.as_ref().and_then(|c| c.speech);
        let observed = Observed {
            status: self.status,
            upstream_responded: self.upstream_responded,
            termination,
            estimated_input_tokens: self.chat.as_ref().map(ChatRequest::input_bound).unwrap_or(0),
            image_bound: self.chat.as_ref().filter(|c| c.api.makes_images()).map(|c| c.output_bound(0)),
            image_input_bound: self.chat.as_ref().map(ChatRequest::image_input_bound).unwrap_or(0),
            audio_input_ms: self.chat.as_ref().map(|c| c.input_audio_ms).unwrap_or(0),
            input_characters: speech.map_or(0, |s| s.characters),
            spoken: speech.map(|s| s.charged_output(self.reader.played_ms(s.format))),
            json: self.response_info.clone(),
            stream,
            body_note,
            body_bytes,
            head_served: self.head_served,
            container_gb: self.chat.as_ref().map_or(0, |c| c.container_gb),
        };
        let (mut usage, source, outcome, error) = account(&observed);
        // Billed at the tier and geography the answer says served it.
        let premium = self.chat.as_ref().map(|c| c.premium).unwrap_or_default().settled(observed.served());
        let api = self.chat.as_ref().map_or(Api::OpenAiChat, |c| c.api);
        let price = cfg.price_for(api, &target.provider, &target.upstream_model).map(|p| p.at(premium));
        usage = crate::record::charged(usage, source, price.as_ref());
        let (cost, savings) = price.map(|p| p.cost_and_savings(&usage)).unwrap_or((0, 0));
        let mut rec = self.build_record(usage, source, outcome, error, cost, price.is_some());
        rec.cache_savings_micros = savings;
        (rec.service_tier, rec.inference_geo) = (premium.tier, premium.geo);
        if let (Some((verdict, marker)), true) = (&self.cache_verdict, outcome == Outcome::Ok) {
            let diagnosis = observed.stream.as_ref().map_or(observed.json.as_ref().and_then(|j| j.diagnosis), |s| s.diagnosis);
            rec.cache_miss = crate::fingerprint::explain(verdict, *marker, diagnosis, &rec.usage, price.as_ref());
        }
        // (A refusal of the provider's is recorded as any request's is.)
        if self.chat.as_ref().is_some_and(|c| c.background) && (200..300).contains(&self.status) {
            return self.settle_background(&cfg, rec);
        }
        self.remember_context(&rec);
        // Anthropic's advisor calls, the Responses API's image generation
        // tool's: the companion model's own record.
        let advisor_usage = observed.stream.as_ref().and_then(|s| s.advisor).or_else(|| observed.json.as_ref().and_then(|j| j.advisor));
        let image_calls = observed.stream.as_ref().map(|s| s.image_calls).or_else(|| observed.json.as_ref().map(|j| j.image_calls)).unwrap_or(0);
        let estimated_input = observed.estimated_input_tokens;
        let mut advisor = target.advisor.as_deref().and_then(|a| match advisor_usage {
            Some(u) => Some(crate::record::advisor_record(&rec, a, u, UsageSource::Provider)),
            // Images made, their usage not reported: the images asked for, estimated.
            None if a.kind == crate::route::advisor::Companion::ImageGeneration && image_calls > 0 => {
                let u = crate::record::images_estimated(image_calls, estimated_input, a.output_per_call);
                Some(crate::record::advisor_record(&rec, a, u, UsageSource::Estimated))
            }
            None => None,
        });
        let spent = |r: &UsageRecord| Amount { micros: r.cost_micros, tokens: r.usage.budget_tokens() };
        let actual = spent(&rec).saturating_add(advisor.as_ref().map(spent).unwrap_or_default());
        super::super::with_budget_local(|u| admission::settle(&HostCounters, u, &self.reservations, actual));
        self.emit(&mut rec);
        if let Some(a) = advisor.as_mut() {
            self.ship(&cfg, a, false);
            // What the client is told the request cost includes its advisor's.
            rec.cost_micros = rec.cost_micros.saturating_add(a.cost_micros);
        }
        Some(rec)
    }

    /// A background response's create: charged now when its answer (a
    /// stream that ran to its end) reports the usage, or when the client
    /// left its stream after output came (estimated, as any stream left
    /// early: what it took is charged even if it never reads the rest),
    /// under the id every later read of it charges, counted once
    /// ([`crate::background`]). Otherwise it runs on at the provider, its
    /// reservation given back, and is charged when read.
    fn settle_background(&mut self, cfg: &crate::config::Config, mut rec: UsageRecord) -> Option<UsageRecord> {
        self.phase = Phase::Recorded;
        let id = match &self.reader {
            Reader::Stream { tracker, .. } => tracker.response_id().map(str::to_string),
            _ => self.response_info.as_ref().and_then(|r| r.response_id.clone()),
        };
        let took_output = rec.stream && rec.usage_source == UsageSource::Estimated && rec.usage.output_tokens > 0;
        match id.filter(|_| rec.usage_source == UsageSource::Provider || took_output) {
            Some(id) => {
                let actual = Amount { micros: rec.cost_micros, tokens: rec.usage.budget_tokens() };
                super::super::with_budget_local(|u| admission::settle(&HostCounters, u, &self.reservations, actual));
                rec.id = crate::background::record_id(&id);
                self.ship_charge(cfg, &mut rec, true);
                Some(rec)
            }
            None => {
                super::super::with_budget_local(|u| admission::release(&HostCounters, u, &self.reservations));
                None
            }
        }
    }

    /// A stored Responses API answer: the context a request continuing it
    /// (by its id, or by the conversation it continued) carries, for this
    /// Envoy to reserve ([`crate::context`]).
    fn remember_context(&self, rec: &UsageRecord) {
        let Some(chat) = self.chat.as_ref().filter(|c| c.api == Api::OpenAiResponses && c.stored && self.translate.is_none()) else { return };
        if rec.outcome != Outcome::Ok || rec.usage_source != UsageSource::Provider {
            return;
        }
        let id = match &self.reader {
            Reader::Stream { tracker, .. } => tracker.response_id(),
            _ => self.response_info.as_ref().and_then(|r| r.response_id.as_deref()),
        };
        let tokens = crate::context::carried(&rec.usage);
        for id in id.into_iter().chain(chat.continues.as_deref()).filter(|id| crate::context::usable(id)) {
            let _ = host::set_shared(&crate::context::slot_key(id), &crate::context::entry(id, tokens), None);
        }
    }

    /// (Takes the capture out of `rec`: it leaves with the shipped record only.)
    pub(super) fn emit(&mut self, rec: &mut UsageRecord) {
        self.phase = Phase::Recorded;
        let Some(cfg) = self.config.clone() else { return };
        self.ship(&cfg, rec, true);
    }

    /// Logs, ships and counts a record; the request's own (`primary`) is
    /// also what the access log's fields read.
    pub(super) fn ship(&self, cfg: &crate::config::Config, rec: &mut UsageRecord, primary: bool) {
        // A capture (prompt and answer text) goes to the control service only: never to a log.
        let capture = rec.capture.take();
        // Serialised only for what reads it: the log line, the access log's
        // whole-record field, the control service.
        let logged = cfg.log_records || cfg.access_log_fields.contains(&crate::access_log::Field::Usage);
        let json = if logged { serde_json::to_string(&rec).unwrap_or_default() } else { String::new() };
        if cfg.log_records {
            log::info!("tollgate.usage {json}");
        }
        if cfg.control.is_some() {
            match capture {
                Some(c) => {
                    rec.capture = Some(c);
                    let shipped = serde_json::to_string(&*rec).unwrap_or_default();
                    rec.capture = None;
                    enqueue_record(shipped.as_bytes());
                }
                None if logged => enqueue_record(json.as_bytes()),
                None => enqueue_record(serde_json::to_string(&rec).unwrap_or_default().as_bytes()),
            }
        }
        // Filter state for access logs (`access_log_fields`): %FILTER_STATE(wasm.tollgate.usage:PLAIN)% and flat fields.
        for f in cfg.access_log_fields.iter().filter(|_| primary) {
            host::set_property(&[f.property()], f.value(rec, &json).as_bytes());
        }
        if cfg.metrics {
            record_metrics(rec);
        }
    }

    pub(super) fn add_cost_headers(&self, rec: &UsageRecord) {
        for (k, v) in crate::record::cost_headers(rec) {
            self.add_own_header(k, &v);
        }
    }

    pub(super) fn termination_from_host(&self) -> Termination {
        if self.response_complete {
            return Termination::Complete;
        }
        let details = host::property(&["response", "code_details"]).unwrap_or_default();
        if details.windows(10).any(|w| w == b"downstream") {
            Termination::DownstreamReset
        } else {
            Termination::UpstreamReset
        }
    }
}
