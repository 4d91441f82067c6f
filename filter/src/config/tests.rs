use super::*;
use crate::keys::hash_key;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "keys": [{"id": "k1", "key_hash": hash_key("tg-1"), "team": "search", "project": "ranker",
                  "models": ["openai/*", "cheap"], "projects": ["labs"]}],
        "providers": [
            {"name": "openai", "format": "openai", "cluster": "openai", "host": "api.openai.com", "api_key": "sk-x"},
            {"name": "anthropic", "format": "anthropic", "cluster": "anthropic", "host": "api.anthropic.com"},
            {"name": "deepseek", "format": "openai", "cluster": "deepseek", "host": "api.deepseek.com", "path_prefix": ""}
        ],
        "routes": [
            {"model": "openai/gpt-5.4", "provider": "openai", "upstream_model": "gpt-5.4"},
            {"model": "cheap", "provider": "deepseek", "upstream_model": "deepseek-v4"},
            {"model": "openai/*", "provider": "openai"},
            {"model": "anthropic/*", "provider": "anthropic"},
            {"model": "claude-*", "provider": "anthropic"}
        ],
        "pricing": {
            "openai/gpt-5.4": {"input": 2500000, "cached_input": 250000, "output": 15000000},
            "openai/gpt-5*": {"input": 1, "output": 1},
            "deepseek/deepseek-v4": {"input": 270000, "output": 1100000}
        }
    })
}

fn parse(v: serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes())
}

fn field_of(v: serde_json::Value) -> String {
    parse(v).err().map(|e| e.field).unwrap_or_default()
}

#[test]
fn valid_config_and_defaults() {
    let c = parse(base()).unwrap();
    assert_eq!(c.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    assert_eq!(c.cluster_header, "x-tollgate-cluster");
    assert_eq!(c.other_paths, OtherPaths::Deny);
    assert!(c.cost_headers && c.force_stream_usage && c.log_records);
    assert_eq!(c.providers[0].path_prefix, "/v1");
    assert_eq!(c.providers[2].path_prefix, "");
    assert_eq!(c.providers[1].anthropic_version, "2023-06-01");
    // The output cap member: OpenAI's own, else the one compatible APIs honour (DeepSeek ignores the other).
    let caps: Vec<_> = c.providers.iter().map(|p| p.output_cap_field).collect();
    assert_eq!(caps, vec![Some("max_completion_tokens"), None, Some("max_tokens")]);
    for azure in ["my-team.openai.azure.com", "resource-name.cognitiveservices.azure.com", "hub.services.ai.azure.com"] {
        let mut v = base();
        v["providers"][0]["host"] = json!(azure);
        v["providers"][2]["output_cap_field"] = json!("max_completion_tokens");
        let caps: Vec<_> = parse(v).unwrap().providers.iter().map(|p| p.output_cap_field).collect();
        assert_eq!(caps, vec![Some("max_completion_tokens"), None, Some("max_completion_tokens")], "{azure}, and as configured");
    }
}

#[test]
fn routing() {
    let c = parse(base()).unwrap();
    let (r, m) = c.resolve("openai/gpt-5.4").unwrap();
    assert_eq!((r.route, r.provider.name.as_str(), m.as_str()), ("openai/gpt-5.4", "openai", "gpt-5.4"));
    let (r, m) = c.resolve("cheap").unwrap();
    assert_eq!((r.provider.cluster.as_str(), m.as_str()), ("deepseek", "deepseek-v4"));
    let (r, m) = c.resolve("openai/gpt-5.4-mini").unwrap();
    assert_eq!((r.route, m.as_str()), ("openai/*", "gpt-5.4-mini"));
    let (r, m) = c.resolve("claude-sonnet-4-6").unwrap();
    assert_eq!((r.route, m.as_str()), ("claude-*", "claude-sonnet-4-6"));
    assert!(c.resolve("gpt-5.4").is_none());
    assert!(c.resolve("mistral/large").is_none());
}

#[test]
fn longest_wildcard_wins() {
    let mut v = base();
    v["routes"].as_array_mut().unwrap().push(json!({"model": "openai/o*", "provider": "deepseek"}));
    let c = parse(v).unwrap();
    assert_eq!(c.resolve("openai/o5").unwrap().0.route, "openai/o*");
    assert_eq!(c.resolve("openai/gpt").unwrap().0.route, "openai/*");
}

#[test]
fn pricing_exact_then_longest_prefix() {
    let c = parse(base()).unwrap();
    assert_eq!(c.price("openai", "gpt-5.4").unwrap().input, 2_500_000);
    assert_eq!(c.price("openai", "gpt-5.4-mini").unwrap().input, 1);
    assert!(c.price("openai", "o5").is_none());
    assert_eq!(c.price("deepseek", "deepseek-v4").unwrap().output, 1_100_000);
}

#[test]
fn a_long_context_band_is_read_and_checked_naming_the_field() {
    let mut v = base();
    v["pricing"]["openai/gpt-5.4"]["long_context"] = json!({"above_input_tokens": 272000, "input": 5000000, "output": 22500000});
    let lc = parse(v.clone()).unwrap().price("openai", "gpt-5.4").unwrap().long_context.unwrap();
    assert_eq!((lc.above_input_tokens, lc.input, lc.cached_input, lc.output), (272_000, 5_000_000, None, 22_500_000));
    v["pricing"]["openai/gpt-5.4"]["long_context"]["above_input_tokens"] = json!(0);
    assert_eq!(field_of(v.clone()), "pricing.openai/gpt-5.4.long_context.above_input_tokens");
    v["pricing"]["openai/gpt-5.4"]["long_context"] = json!({"above_input_tokens": 1, "input": 1});
    assert!(field_of(v.clone()).starts_with("pricing"), "output is required");
    v["pricing"]["openai/gpt-5.4"]["long_context"] = json!({"above_input_tokens": 1, "input": 1, "output": 1, "typo": 1});
    assert!(field_of(v).starts_with("pricing"), "unknown fields refused");
}

#[test]
fn tier_percents_are_read_and_bounded_naming_the_field() {
    let mut v = base();
    v["pricing"]["openai/gpt-5.4"]["priority_percent"] = json!(175);
    v["pricing"]["openai/gpt-5.4"]["flex_percent"] = json!(50);
    let p = parse(v.clone()).unwrap().price("openai", "gpt-5.4").unwrap();
    assert_eq!((p.priority_percent, p.flex_percent), (Some(175), Some(50)));
    for (f, bad) in [("priority_percent", json!(0)), ("ultrafast_percent", json!(10_001)), ("priority_percent", json!(-1)), ("flex_percent", json!("50"))] {
        let mut v = base();
        v["pricing"]["openai/gpt-5.4"][f] = bad.clone();
        let e = parse(v).err().map(|e| (e.field, e.message)).unwrap_or_default();
        assert!(e.0.starts_with("pricing") && (e.0.ends_with(f) || e.1.contains(f)), "{f}={bad}: {e:?}");
    }
}

#[test]
fn key_permissions() {
    let c = parse(base()).unwrap();
    let k = c.key_by_hash(&hash_key("tg-1")).unwrap();
    assert!(k.may_use("openai/gpt-5.4") && k.may_use("cheap"));
    assert!(!k.may_use("claude-sonnet-4-6"));
    assert!(k.may_tag_project("labs") && k.may_tag_project("ranker") && !k.may_tag_project("x"));
    assert_eq!(c.models_for(k), vec!["openai/gpt-5.4", "cheap", "openai/*"]);
    let listed = |c: &Config, k| c.listable_models(k).into_iter().map(|(m, p)| (m.to_string(), p.name.clone())).collect::<Vec<_>>();
    let named = |l: &[(&str, &str)]| l.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect::<Vec<_>>();
    assert_eq!(listed(&c, k), named(&[("openai/gpt-5.4", "openai"), ("cheap", "deepseek")]));
    // Exactly priced models a wildcard route serves as priced are listed
    // too; not one no route serves (`deepseek/…`), one the key may not use,
    // one a wildcard sends elsewhere, or a price pattern.
    let mut v = base();
    for m in ["openai/gpt-5.4-mini", "anthropic/claude-x", "openai/gpt-5.4"] {
        v["pricing"][m] = json!({"input": 1, "output": 1});
    }
    v["routes"][2] = json!({"model": "openai/*", "provider": "openai", "upstream_model": "gpt-5.4-nano"});
    v["pricing"]["openai/gpt-5.4-nano"] = json!({"input": 1, "output": 1});
    let c = parse(v.clone()).unwrap();
    let k = c.key_by_hash(&hash_key("tg-1")).unwrap();
    assert_eq!(listed(&c, k), named(&[("openai/gpt-5.4", "openai"), ("cheap", "deepseek"), ("openai/gpt-5.4-nano", "openai")]),
               "openai/* serves every name as gpt-5.4-nano: openai/gpt-5.4-mini is not served as priced");
    v["routes"][2] = json!({"model": "openai/*", "provider": "openai"});
    let c = parse(v).unwrap();
    let k = c.key_by_hash(&hash_key("tg-1")).unwrap();
    assert_eq!(listed(&c, k), named(&[("openai/gpt-5.4", "openai"), ("cheap", "deepseek"), ("openai/gpt-5.4-mini", "openai"), ("openai/gpt-5.4-nano", "openai")]));
    assert!(c.key_by_hash(&hash_key("tg-2")).is_none());
}

#[test]
fn secrets_are_not_in_debug_output() {
    let c = parse(base()).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("sk-x"), "{dbg}");
}

#[test]
fn control_section() {
    let mut v = base();
    v["control"] = json!({"cluster": "tollgate_control", "token": "filter-token-0123456789"});
    let c = parse(v.clone()).unwrap();
    let ctl = c.control.as_ref().unwrap();
    assert_eq!((ctl.poll_ms, ctl.stale_after_ms, ctl.failure_mode), (1000, 10_000, FailureMode::Local));
    assert_eq!(ctl.authority, "tollgate_control");
    assert!(!format!("{c:?}").contains("filter-token"));
    v["control"]["failure_mode"] = json!("closed");
    assert_eq!(parse(v.clone()).unwrap().control.unwrap().failure_mode, FailureMode::Closed);
    v["control"]["failure_mode"] = json!("maybe");
    assert_eq!(field_of(v.clone()), "control.failure_mode");
    v["control"]["failure_mode"] = json!("open");
    v["control"]["token"] = json!("short");
    assert_eq!(field_of(v.clone()), "control.token");
    v["control"]["token"] = json!("filter-token-0123456789");
    v["control"]["stale_after_ms"] = json!(500);
    assert_eq!(field_of(v.clone()), "control.stale_after_ms");
    v["control"]["stale_after_ms"] = json!(10_000);
    // The control service refuses these names; Envoy refuses them first.
    for bad in [json!("a\r\nb"), json!("n".repeat(257))] {
        v["control"]["node"] = bad;
        assert_eq!(field_of(v.clone()), "control.node");
    }
    v["control"]["node"] = json!("\u{4e16}".repeat(256));
    assert!(parse(v).is_ok());
}

#[test]
fn auto_cache_is_for_anthropic_routes_and_says_what_is_wrong() {
    let mut v = base();
    v["routes"][0]["auto_cache"] = json!({});
    assert_eq!(field_of(v.clone()), "routes[0].auto_cache", "route 0 goes to an OpenAI-format provider");
    let ai = |ac: serde_json::Value| {
        let mut v = base();
        let n = v["routes"].as_array().unwrap().iter().position(|r| r["model"] == "claude-*").unwrap();
        v["routes"][n]["auto_cache"] = ac;
        (n, v)
    };
    let (n, v) = ai(json!({"ttl": "1d"}));
    assert_eq!(field_of(v), format!("routes[{n}].auto_cache.ttl"));
    let (n, v) = ai(json!({"min_tokens": 0}));
    assert_eq!(field_of(v), format!("routes[{n}].auto_cache.min_tokens"));
    let (_, v) = ai(json!({"min_tokens": 2048, "ttl": "1h"}));
    let cfg = parse(v).unwrap();
    let (r, _) = cfg.resolve("claude-sonnet-4-6").unwrap();
    assert_eq!(r.auto_cache, Some(crate::caching::AutoCache { min_tokens: 2048, ttl_1h: true }));
    assert_eq!(cfg.resolve("anthropic/claude-x").unwrap().0.auto_cache, None, "per route");
}

#[test]
fn errors_name_the_field() {
    let mut v = base();
    v["routes"][1]["provider"] = json!("nope");
    assert_eq!(field_of(v.clone()), "routes[1].provider");
    assert!(parse(v).unwrap_err().to_string().contains("unknown provider 'nope'"));

    let mut v = base();
    v["keys"][0]["key_hash"] = json!("tg-plaintext-key");
    assert_eq!(field_of(v), "keys[0].key_hash");

    let mut v = base();
    v["providers"][0]["format"] = json!("grpc");
    let e = parse(v).unwrap_err();
    assert_eq!(e.field, "providers[0].format");
    assert!(e.message.contains("unknown variant"), "{}", e.message);

    let mut v = base();
    v["routes"][0]["modle"] = json!("x");
    let e = parse(v).unwrap_err();
    assert_eq!(e.field, "routes[0].modle");

    let mut v = base();
    v["pricing"]["openai/gpt-5.4"]["input"] = json!(-1);
    assert_eq!(field_of(v), "pricing.openai/gpt-5.4.input");

    let mut v = base();
    v["pricing"]["openai/gpt-5.4"]["input"] = json!(2.5);
    assert_eq!(field_of(v), "pricing.openai/gpt-5.4.input");

    let mut v = base();
    v["pricing"]["azure/gpt"] = json!({"input": 1, "output": 1});
    assert_eq!(field_of(v), "pricing.azure/gpt");

    let mut v = base();
    v["routes"][2]["model"] = json!("openai/*x");
    assert_eq!(field_of(v), "routes[2].model");

    let mut v = base();
    v["routes"].as_array_mut().unwrap().push(json!({"model": "cheap", "provider": "openai"}));
    assert_eq!(field_of(v), "routes[5].model");

    let mut v = base();
    v["max_request_bytes"] = json!(10);
    assert_eq!(field_of(v), "max_request_bytes");

    let mut v = base();
    v["cluster_header"] = json!("X Bad");
    assert_eq!(field_of(v), "cluster_header");

    let mut v = base();
    v["providers"][0]["path_prefix"] = json!("v1/");
    assert_eq!(field_of(v), "providers[0].path_prefix");

    let mut v = base();
    v["providers"][1]["name"] = json!("openai");
    assert_eq!(field_of(v), "providers[1].name");

    let mut v = base();
    v["routes"] = json!([]);
    assert_eq!(field_of(v), "routes");

    let mut v = base();
    v.as_object_mut().unwrap().remove("providers");
    assert!(parse(v).unwrap_err().message.contains("missing field `providers`"));

    assert_eq!(Config::from_json(b"not json").unwrap_err().field, "(root)");
    assert_eq!(Config::from_json(b"").unwrap_err().field, "(root)");
}

#[test]
fn every_bounded_number_takes_its_ends_and_refuses_past_them_naming_the_field_and_the_bounds() {
    // (path, lowest, highest); the control section's `max_buffered_records`
    // is bounded by `max_batch` instead, and `stale_after_ms` by `poll_ms`.
    let bounded: [(&[&str], u64, u64); 10] = [
        (&["max_request_bytes"], 1024, 256 << 20),
        (&["max_response_bytes"], 1024, 256 << 20),
        (&["body_wait_ms"], 1000, 600_000),
        (&["default_max_tokens"], 1, 10_000_000),
        (&["control", "poll_ms"], 100, 600_000),
        (&["control", "stale_after_ms"], 600_001, 86_400_000),
        (&["control", "flush_ms"], 50, 600_000),
        (&["control", "timeout_ms"], 100, 60_000),
        (&["control", "max_batch"], 1, 10_000),
        (&["control", "max_batch_bytes"], 64 << 10, 16 << 20),
    ];
    for (path, lo, hi) in bounded {
        let with = |n: u64| {
            let mut v = base();
            v["control"] = json!({"cluster": "tollgate_control", "token": "filter-token-0123456789",
                                  "max_buffered_records": 10_000_000, "stale_after_ms": 86_400_000});
            if path[1..] == ["stale_after_ms"] {
                v["control"]["poll_ms"] = json!(600_000);
            }
            let at = path[..path.len() - 1].iter().fold(&mut v, |v, k| &mut v[*k]);
            at[path[path.len() - 1]] = json!(n);
            parse(v)
        };
        let name = path.join(".");
        for n in [lo, hi] {
            assert!(with(n).is_ok(), "{name} = {n}: {:?}", with(n).err());
        }
        for n in [lo - 1, hi + 1] {
            let e = with(n).expect_err(&format!("{name} = {n} accepted"));
            assert_eq!(e.field, name);
            if !(name == "control.stale_after_ms" && n == lo - 1) {
                assert!(e.message.contains(&format!("between {} and {hi}", if name == "control.stale_after_ms" { 1000 } else { lo })), "{e}");
            }
        }
    }
}
