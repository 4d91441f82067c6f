//! The configuration checked section by section, each error naming its
//! field: one function per section (providers, routes, keys, pricing, the
//! control service, capture, stored objects), and [`config`] assembling
//! them in the order a reader of the YAML meets them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use super::{
    err, is_header_name, non_empty, Capture, Config, ConfigError, Control, KeyInfo, OneOrMany, Pattern, Provider, ProviderFormat,
    RawCapture, RawConfig, RawControl, RawKey, RawProvider, RawRoute, Route, Secret, UpstreamApi, DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_CLUSTER_HEADER, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES,
};
use crate::keys::is_key_hash;
use crate::pricing::Price;

pub(super) fn config(raw: RawConfig) -> Result<Config, ConfigError> {
    let (providers, by_name) = providers(raw.providers)?;
    let routes = routes(raw.routes, &providers, &by_name)?;
    let keys = keys(raw.keys)?;
    let pricing = pricing(raw.pricing, &by_name)?;
    let max_request_bytes = within("max_request_bytes", raw.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES, 1024, 256 << 20)?;
    let max_response_bytes = within("max_response_bytes", raw.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES, 1024, 256 << 20)?;
    let cluster_header = raw.cluster_header.unwrap_or_else(|| DEFAULT_CLUSTER_HEADER.to_string());
    if !is_header_name(&cluster_header) {
        return Err(err("cluster_header", "must be a lowercase HTTP header name"));
    }
    let control = raw.control.map(control).transpose()?;
    let body_wait_ms = within("body_wait_ms", raw.body_wait_ms, 10_000, 1000, 600_000)?;
    let default_max_tokens = within("default_max_tokens", raw.default_max_tokens, 4096, 1, 10_000_000)?;
    let guardrails = match raw.guardrails {
        Some(g) => Some(std::rc::Rc::new(crate::guard::Policy::build(g).map_err(|(f, m)| err(format!("guardrails.{f}"), m))?)),
        None => None,
    };
    let capture = raw.capture.map(capture).transpose()?;
    let stored_objects = stored_objects(raw.stored_objects, &providers, &by_name)?;
    Ok(Config {
        stored_objects,
        list_stored_objects: raw.list_stored_objects.unwrap_or(false),
        guardrails,
        capture,
        control,
        default_max_tokens,
        body_wait_ms,
        metrics: raw.metrics.unwrap_or(true),
        access_log_fields: crate::access_log::fields(raw.access_log_fields),
        keys,
        providers,
        routes,
        pricing,
        unpriced_models: raw.unpriced_models.unwrap_or_default(),
        max_request_bytes,
        max_response_bytes,
        other_paths: raw.other_paths.unwrap_or_default(),
        cluster_header,
        cost_headers: raw.cost_headers.unwrap_or(true),
        cache_insights: raw.cache_insights.unwrap_or(true),
        force_stream_usage: raw.force_stream_usage.unwrap_or(true),
        log_records: raw.log_records.unwrap_or(true),
    })
}

/// The providers, and each one's index by name.
fn providers(raw: Vec<RawProvider>) -> Result<(Vec<Provider>, HashMap<String, usize>), ConfigError> {
    if raw.is_empty() {
        return Err(err("providers", "at least one provider is required"));
    }
    let mut providers = Vec::with_capacity(raw.len());
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, p) in raw.into_iter().enumerate() {
        let f = |n: &str| format!("providers[{i}].{n}");
        non_empty(f("name"), &p.name)?;
        if p.name.contains('/') || p.name.contains('*') {
            return Err(err(f("name"), "must not contain '/' or '*'"));
        }
        if by_name.insert(p.name.clone(), i).is_some() {
            return Err(err(f("name"), format!("duplicate provider name '{}'", p.name)));
        }
        providers.push(provider(&f, p)?);
    }
    Ok((providers, by_name))
}

/// One provider; `f` names its fields (`providers[2].host`).
fn provider(f: &dyn Fn(&str) -> String, p: RawProvider) -> Result<Provider, ConfigError> {
    non_empty(f("cluster"), &p.cluster)?;
    non_empty(f("host"), &p.host)?;
    if p.host.contains(['/', ' ']) {
        return Err(err(f("host"), "must be a host[:port], without scheme or path"));
    }
    let prefix = p.path_prefix.unwrap_or_else(|| if p.format == ProviderFormat::Gemini { "/v1beta" } else { "/v1" }.to_string());
    if !(prefix.is_empty() || (prefix.starts_with('/') && !prefix.ends_with('/'))) {
        return Err(err(f("path_prefix"), "must be empty or start with '/' and not end with '/'"));
    }
    if let Some(k) = &p.api_key {
        if k.trim().is_empty() {
            return Err(err(f("api_key"), "must not be empty; omit it when Envoy injects the credential"));
        }
        if k.contains(['\r', '\n']) {
            return Err(err(f("api_key"), "must not contain line breaks"));
        }
    }
    let anthropic_version = p.anthropic_version.unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.to_string());
    non_empty(f("anthropic_version"), &anthropic_version)?;
    if !crate::text::header_safe(&anthropic_version) || !crate::text::header_safe(&p.host) {
        return Err(err(f("host"), "host and anthropic_version must be visible ASCII"));
    }
    // Unset on an OpenAI-format provider: OpenAI's own API (and Azure
    // OpenAI's, under its three domains) takes `max_completion_tokens`,
    // its reasoning models only that; other OpenAI-compatible APIs
    // document `max_tokens`, and DeepSeek ignores
    // `max_completion_tokens` (earendil-works/pi#8018), so a cap sent
    // there in it would bound nothing.
    const AZURE: [&str; 3] = [".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"];
    let openai_itself = p.host == "api.openai.com" || AZURE.iter().any(|d| p.host.ends_with(d));
    let output_cap_field = match (p.output_cap_field.as_deref(), p.format) {
        (None, ProviderFormat::Openai) if !openai_itself => Some("max_tokens"),
        (None, ProviderFormat::Openai) | (Some("max_completion_tokens"), _) => Some("max_completion_tokens"),
        (None, ProviderFormat::Gemini) | (Some("max_tokens"), _) => Some("max_tokens"),
        (None, ProviderFormat::Anthropic) | (Some("none"), _) => None,
        (Some(other), _) => {
            return Err(err(
                f("output_cap_field"),
                format!("'{other}' is not one of max_completion_tokens, max_tokens, none"),
            ))
        }
    };
    Ok(Provider {
        name: p.name,
        format: p.format,
        cluster: p.cluster,
        host: p.host,
        path_prefix: prefix,
        api_key: p.api_key.map(Secret),
        anthropic_version,
        output_cap_field,
    })
}

fn routes(raw: Vec<RawRoute>, providers: &[Provider], by_name: &HashMap<String, usize>) -> Result<Vec<Route>, ConfigError> {
    if raw.is_empty() {
        return Err(err("routes", "at least one route is required"));
    }
    let mut routes = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let f = |n: &str| format!("routes[{i}].{n}");
        let pattern = Pattern::parse(&r.model).map_err(|m| err(f("model"), m))?;
        if !seen.insert(r.model.clone()) {
            return Err(err(f("model"), format!("duplicate route for '{}'", r.model)));
        }
        let Some(&provider) = by_name.get(&r.provider) else {
            return Err(unknown_provider(f("provider"), &r.provider, providers));
        };
        routes.push(route(&f, r, pattern, provider, providers)?);
    }
    Ok(routes)
}

/// One route, to the provider at index `provider`; `f` names its fields.
fn route(f: &dyn Fn(&str) -> String, r: RawRoute, pattern: Pattern, provider: usize, providers: &[Provider]) -> Result<Route, ConfigError> {
    if let Some(um) = &r.upstream_model {
        non_empty(f("upstream_model"), um)?;
        if um.contains('*') {
            return Err(err(f("upstream_model"), "must be a model name, not a pattern"));
        }
        if !crate::request::valid_model_name(um) {
            return Err(err(f("upstream_model"), "must be 1 to 256 visible ASCII characters"));
        }
    }
    let auto_cache = match r.auto_cache {
        None => None,
        Some(ac) => {
            let is_anthropic = providers.get(provider).is_some_and(|p: &Provider| p.format == ProviderFormat::Anthropic);
            if !is_anthropic {
                return Err(err(f("auto_cache"), "only for routes to a provider with format 'anthropic' (OpenAI and DeepSeek cache without markers)"));
            }
            let min_tokens = ac.min_tokens.unwrap_or(1024);
            if !(1..=1_000_000).contains(&min_tokens) {
                return Err(err(f("auto_cache.min_tokens"), "must be 1 to 1000000"));
            }
            let ttl_1h = match ac.ttl.as_deref() {
                None | Some("5m") => false,
                Some("1h") => true,
                Some(_) => return Err(err(f("auto_cache.ttl"), "must be \"5m\" or \"1h\"")),
            };
            Some(crate::caching::AutoCache { min_tokens, ttl_1h })
        }
    };
    let upstream_api = match r.upstream_api.as_deref() {
        None => UpstreamApi::ByModel,
        Some(_) if providers.get(provider).is_some_and(|p: &Provider| p.format != ProviderFormat::Openai) => {
            return Err(err(f("upstream_api"), "only for routes to a provider with format 'openai'"));
        }
        Some("chat_completions") => UpstreamApi::ChatCompletions,
        Some("responses") => UpstreamApi::Responses,
        Some(other) => {
            return Err(err(f("upstream_api"), format!("'{}' is not one of chat_completions, responses", crate::text::clean_field(other, 64))))
        }
    };
    if r.fallbacks.len() > 3 || r.fallbacks.iter().any(|m| !crate::request::valid_model_name(m) || *m == r.model) {
        return Err(err(f("fallbacks"), "at most 3 models, each a valid model name other than the route's own"));
    }
    Ok(Route {
        pattern,
        name: r.model,
        provider,
        upstream_model: r.upstream_model,
        auto_cache,
        json_repair: r.json_repair.unwrap_or(false),
        fallbacks: r.fallbacks,
        upstream_api,
    })
}

/// The keys by their hash.
fn keys(raw: Vec<RawKey>) -> Result<HashMap<String, Rc<KeyInfo>>, ConfigError> {
    let mut keys = HashMap::with_capacity(raw.len());
    let mut ids = HashSet::new();
    for (i, k) in raw.into_iter().enumerate() {
        let f = |n: &str| format!("keys[{i}].{n}");
        non_empty(f("id"), &k.id)?;
        if !ids.insert(k.id.clone()) {
            return Err(err(f("id"), format!("duplicate key id '{}'", k.id)));
        }
        if !is_key_hash(&k.key_hash) {
            return Err(err(
                f("key_hash"),
                "must be the SHA3-256 of the key as 64 lowercase hex digits (never the key itself)",
            ));
        }
        non_empty(f("team"), &k.team)?;
        non_empty(f("project"), &k.project)?;
        let models = match k.models {
            None => None,
            Some(ms) => {
                let mut ps = Vec::with_capacity(ms.len());
                for (j, m) in ms.iter().enumerate() {
                    ps.push(Pattern::parse(m).map_err(|e| err(format!("keys[{i}].models[{j}]"), e))?);
                }
                Some(ps)
            }
        };
        let info = KeyInfo {
            id: k.id,
            key_hash: k.key_hash.clone(),
            team: k.team,
            project: k.project,
            models,
            projects: k.projects,
            tags: k.tags,
        };
        if keys.insert(k.key_hash, Rc::new(info)).is_some() {
            return Err(err(f("key_hash"), "two keys have the same hash"));
        }
    }
    Ok(keys)
}

/// The prices, exact entries first, then longer prefixes before shorter ones.
fn pricing(raw: BTreeMap<String, Price>, by_name: &HashMap<String, usize>) -> Result<Vec<(Pattern, Price)>, ConfigError> {
    let mut pricing = Vec::with_capacity(raw.len());
    for (name, price) in raw {
        let field = format!("pricing.{name}");
        let Some((prov, model)) = name.split_once('/') else {
            return Err(err(field, "pricing keys are '<provider>/<upstream model>'"));
        };
        if !by_name.contains_key(prov) {
            return Err(err(field, format!("unknown provider '{prov}'")));
        }
        Pattern::parse(model).map_err(|e| err(field.clone(), e))?;
        for (f, v) in [
            ("priority_percent", price.priority_percent),
            ("ultrafast_percent", price.ultrafast_percent),
            ("flex_percent", price.flex_percent),
            ("batch_percent", price.batch_percent),
            ("fast_percent", price.fast_percent),
            ("us_inference_percent", price.us_inference_percent),
        ] {
            if v.is_some_and(|p| !(1..=10_000).contains(&p)) {
                return Err(err(format!("{field}.{f}"), "must be 1 to 10000 (percent of the standard prices)"));
            }
        }
        if price.web_searches_per_request.is_some_and(|n| n > 100) {
            return Err(err(format!("{field}.web_searches_per_request"), "must be 0 to 100 (searches billed on every answered request)"));
        }
        if price.long_context.is_some_and(|lc| lc.above_input_tokens == 0) {
            return Err(err(format!("{field}.long_context.above_input_tokens"), "must be at least 1 (the band applies above it)"));
        }
        let pattern = Pattern::parse(&name).map_err(|e| err(field, e))?;
        pricing.push((pattern, price));
    }
    // Exact entries first, then longer prefixes before shorter ones.
    pricing.sort_by_key(|(p, _)| match p {
        Pattern::Exact(_) => (0, 0),
        Pattern::Prefix(s) => (1, usize::MAX - s.len()),
    });
    Ok(pricing)
}

fn control(c: RawControl) -> Result<Control, ConfigError> {
    non_empty("control.cluster".into(), &c.cluster)?;
    if c.token.len() < 16 {
        return Err(err("control.token", "must be the control service's filter token (16 characters or more)"));
    }
    let poll_ms = within("control.poll_ms", c.poll_ms, 1000, 100, 600_000)?;
    let stale_after_ms = within("control.stale_after_ms", c.stale_after_ms, 10_000, 1000, 86_400_000)?;
    if stale_after_ms <= poll_ms {
        return Err(err("control.stale_after_ms", "must be longer than control.poll_ms"));
    }
    let max_batch = within("control.max_batch", c.max_batch, 500, 1, 10_000)?;
    let max_batch_bytes = within("control.max_batch_bytes", c.max_batch_bytes, 1 << 20, 64 << 10, 16 << 20)?;
    if let Some(why) = c.node.as_deref().filter(|n| !n.is_empty()).and_then(tollgate_protocol::state::node_problem) {
        return Err(err("control.node", why));
    }
    let max_buffered_records = c.max_buffered_records.unwrap_or(100_000);
    if !(max_batch..=10_000_000).contains(&max_buffered_records) {
        return Err(err("control.max_buffered_records", "must be between max_batch and 10000000"));
    }
    Ok(Control {
        authority: c.authority.unwrap_or_else(|| c.cluster.clone()),
        cluster: c.cluster,
        token: Secret(c.token),
        poll_ms,
        flush_ms: within("control.flush_ms", c.flush_ms, 500, 50, 600_000)?,
        timeout_ms: within("control.timeout_ms", c.timeout_ms, 2000, 100, 60_000)?,
        max_batch,
        max_batch_bytes,
        max_buffered_records,
        stale_after_ms,
        failure_mode: c.failure_mode.unwrap_or_default(),
        node: c.node.filter(|n| !n.is_empty()),
    })
}

fn capture(c: RawCapture) -> Result<Capture, ConfigError> {
    let percent = c.percent.unwrap_or(10);
    let max_bytes = c.max_bytes.unwrap_or(65_536);
    if percent > 100 {
        return Err(err("capture.percent", "must be 0 to 100"));
    }
    if !(1024..=tollgate_protocol::record::MAX_CAPTURE_BYTES).contains(&max_bytes) {
        return Err(err("capture.max_bytes", "must be 1024 to 262144"));
    }
    if c.features.is_empty() && c.routes.is_empty() {
        return Err(err("capture.features", "name at least one feature or route"));
    }
    Ok(Capture { features: c.features, routes: c.routes, percent, max_bytes })
}

/// The providers that keep each format's stored objects (their indexes).
fn stored_objects(raw: Option<OneOrMany>, providers: &[Provider], by_name: &HashMap<String, usize>) -> Result<Vec<usize>, ConfigError> {
    let (names, listed) = match raw {
        None => (Vec::new(), false),
        Some(OneOrMany::One(n)) => (vec![n], false),
        Some(OneOrMany::Many(ns)) => (ns, true),
    };
    let mut stored_objects: Vec<usize> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = if listed { format!("stored_objects[{i}]") } else { "stored_objects".to_string() };
        let Some(&p) = by_name.get(name) else {
            return Err(unknown_provider(field, name, providers));
        };
        let format = providers.get(p).map(|p: &Provider| p.format);
        if format == Some(ProviderFormat::Gemini) {
            return Err(err(field, "must name a provider with format 'openai' (responses, conversations, files) or 'anthropic' (files)"));
        }
        if stored_objects.iter().any(|&q| providers.get(q).map(|p: &Provider| p.format) == format) {
            return Err(err(field, "at most one provider of each format: the objects of a format are kept by one"));
        }
        stored_objects.push(p);
    }
    Ok(stored_objects)
}

/// `v`, or `default` when unset, refused outside `lo..=hi`.
fn within<T: PartialOrd + std::fmt::Display + Copy>(field: &str, v: Option<T>, default: T, lo: T, hi: T) -> Result<T, ConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(field, format!("must be between {lo} and {hi}")))
    }
}

/// A provider name no provider has, and the names configured.
fn unknown_provider(field: String, name: &str, providers: &[Provider]) -> ConfigError {
    let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    err(field, format!("unknown provider '{}' (configured: {})", crate::text::clean_field(name, 64), known.join(", ")))
}
