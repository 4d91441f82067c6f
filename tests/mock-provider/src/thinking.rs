//! Anthropic's rules on extended thinking, refused here as the real API
//! refuses them (each message is a real response body, source beside it).
//! The model families are the mock's own knowledge, kept apart from the
//! filter's on purpose: the mock plays Anthropic, and sharing the filter's
//! predicate would make the tests agree with themselves.

use serde_json::{Map, Value};

use crate::strict::Refusal;

fn refuse(message: String) -> Refusal {
    Refusal { status: 400, message, param: None, code: None }
}

/// The version a Claude model name carries (`claude-3-7-sonnet-…` 3.7,
/// `claude-opus-4-8` 4.8, `claude-sonnet-5` 5.0); `None` without one.
fn version(model: &str) -> Option<(u32, u32)> {
    let name = model.to_ascii_lowercase();
    let rest = &name[name.find("claude")? + "claude".len()..];
    let mut nums = rest.split(['-', '.', '@', ':']).skip_while(|t| t.parse::<u32>().is_err()).map_while(|t| t.parse::<u32>().ok().filter(|n| *n < 100));
    let major = nums.next()?;
    Some((major, nums.next().unwrap_or(0)))
}

/// Models before Claude 3.7 think not at all: `'claude-3-5-haiku-20241022'
/// does not support thinking.` (anthropics/claude-code#11388, #2245).
fn thinks(model: &str) -> bool {
    version(model).is_none_or(|v| v >= (3, 7))
}

/// Models that take only adaptive thinking: Opus 4.7 and 4.8
/// (anomalyco/opencode#22863, Sylinko/Everywhere#410), Claude 5 models
/// (cline/cline#12010 for Sonnet 5) and the Mythos and Fable families.
fn adaptive_only(model: &str) -> bool {
    let name = model.to_ascii_lowercase();
    match version(model) {
        _ if name.contains("mythos") || name.contains("fable") => true,
        Some(v) => v >= (5, 0) || (name.contains("opus") && v >= (4, 7)),
        None => false,
    }
}

/// Models that take adaptive thinking: Claude 4.6 and later, and the
/// Mythos and Fable families (Anthropic's adaptive-thinking docs list
/// Mythos Preview, Opus 4.7, Opus 4.6 and Sonnet 4.6, quoted in
/// openclaw/openclaw#67814; Claude 5 models since).
fn takes_adaptive(model: &str) -> bool {
    adaptive_only(model) || version(model).is_none_or(|v| v >= (4, 6))
}

/// Checks `temperature`, `top_p` and `top_k` as Anthropic does (a `null`
/// taken as absent). The models that refuse them are those that take only
/// adaptive thinking: Opus 4.7 and later, the Claude 5 models, Fable and
/// Mythos. `temperature` other than its default 1, and
/// `top_p` and `top_k` at any value (the default included), are 400
/// "`<name>` is deprecated for this model." (probed on the live API for
/// Opus 4.8: temperature 0 and 0.5 refused, 1 answered; top_p 0.5, 0.97
/// and 1 refused; top_k 5 and 0 refused: mnfst/modelparams.dev#238; real
/// bodies for Opus 4.7 in RooCodeInc/Roo-Code#12162, for Opus 4.7 and 4.8
/// and Fable 5 in router-for-me/CLIProxyAPI#4383; Sonnet 5: Anthropic's
/// migration guide, "sampling parameters (temperature, top_p, top_k) set
/// to non-default values return a 400 error"). The gate comes before
/// thinking's own rule on temperature.
pub fn check_sampling(req: &Map<String, Value>) -> Result<(), Refusal> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    if !adaptive_only(model) {
        return Ok(());
    }
    let set = |name: &str| req.get(name).filter(|v| !v.is_null());
    let refused = [
        ("temperature", set("temperature").is_some_and(|t| t.as_f64() != Some(1.0))),
        ("top_p", set("top_p").is_some()),
        ("top_k", set("top_k").is_some()),
    ];
    match refused.iter().find(|(_, r)| *r) {
        Some((name, _)) => Err(refuse(format!("`{name}` is deprecated for this model."))),
        None => Ok(()),
    }
}

/// Whether an assistant message starts with a thinking block.
fn starts_with_thinking(m: &Value) -> Option<(&str, bool)> {
    let first = m.get("content")?.as_array()?.first()?;
    let t = first.get("type").and_then(Value::as_str).unwrap_or("");
    Some((t, matches!(t, "thinking" | "redacted_thinking")))
}

fn has_block(m: &Value, kind: &str) -> bool {
    m.get("content").and_then(Value::as_array).is_some_and(|bs| bs.iter().any(|b| b.get("type").and_then(Value::as_str) == Some(kind)))
}

/// Checks `thinking` (and what it rules out) as Anthropic does.
pub fn check(req: &Map<String, Value>, beta: &str) -> Result<(), Refusal> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    let kind = req.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str);
    let on = matches!(kind, Some("enabled" | "adaptive"));
    let msgs = req.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if on && !thinks(model) {
        return Err(refuse(format!("'{model}' does not support thinking.")));
    }
    if kind == Some("adaptive") && thinks(model) && !takes_adaptive(model) {
        // No recorded answer gives the wording (the refusal follows the docs'
        // list of models): the mock's own words.
        return Err(refuse(format!("thinking.type.adaptive: '{model}' does not support adaptive thinking. Use \"thinking.type.enabled\" with \"budget_tokens\".")));
    }
    if kind == Some("enabled") {
        if adaptive_only(model) {
            return Err(refuse(
                "\"thinking.type.enabled\" is not supported for this model. Use \"thinking.type.adaptive\" and \"output_config.effort\" to control thinking behavior.".into(),
            ));
        }
        let budget = req.get("thinking").and_then(|t| t.get("budget_tokens")).and_then(Value::as_i64);
        // danny-avila/LibreChat#8346, tingly-box#569.
        if budget.is_none_or(|b| b < 1024) {
            return Err(refuse("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into()));
        }
        // liuw1535/antigravity2api-nodejs#149; with interleaved thinking the
        // budget spans the turn and may exceed max_tokens.
        let max = req.get("max_tokens").and_then(Value::as_i64).unwrap_or(0);
        if budget.is_some_and(|b| b >= max) && !beta.contains("interleaved-thinking") {
            return Err(refuse("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into()));
        }
    }
    if on {
        // MartialBE/one-hub#529.
        if req.get("temperature").and_then(Value::as_f64).is_some_and(|t| t != 1.0) {
            return Err(refuse("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#important-considerations-when-using-extended-thinking".into()));
        }
        // mastra-ai/mastra#7507, can1357/oh-my-pi#341.
        if matches!(req.get("tool_choice").and_then(|c| c.get("type")).and_then(Value::as_str), Some("any" | "tool")) {
            return Err(refuse("Thinking may not be enabled when tool_choice forces tool use.".into()));
        }
        // Mid tool loop (the last user turn, consecutive user messages joined,
        // carries tool results), the last assistant message must start with
        // its thinking (n8n-io/n8n#22550, OpenRouterTeam/ai-sdk-provider#162).
        let in_loop = msgs.iter().rev().take_while(|m| m.get("role").and_then(Value::as_str) == Some("user")).any(|m| has_block(m, "tool_result"));
        let last_assistant = msgs.iter().enumerate().rev().find(|(_, m)| m.get("role").and_then(Value::as_str) == Some("assistant"));
        if let (true, Some((i, m))) = (in_loop, last_assistant) {
            if let Some((found, false)) = starts_with_thinking(m) {
                return Err(refuse(format!(
                    "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                )));
            }
        }
    } else if let Some(last) = msgs.last().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant")) {
        // tailcallhq/forgecode#1195.
        if let Some(j) = last.get("content").and_then(Value::as_array).and_then(|bs| bs.iter().position(|b| b.get("type").and_then(Value::as_str) == Some("thinking"))) {
            return Err(refuse(format!(
                "messages.{}.content.{j}: When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`. To use thinking blocks, enable `thinking` in your request.",
                msgs.len() - 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(v: Value, beta: &str) -> Result<(), String> {
        check(v.as_object().unwrap(), beta).map_err(|r| r.message)
    }

    #[test]
    fn sampling_is_refused_on_the_models_that_deprecated_it() {
        let sampled = |v: Value| check_sampling(v.as_object().unwrap()).map_err(|r| r.message);
        for m in ["claude-opus-4-7", "claude-opus-4-8", "claude-sonnet-5", "claude-sonnet-5-5", "claude-fable-5-1", "claude-mythos-preview"] {
            assert_eq!(sampled(json!({"model": m, "temperature": 0.5})), Err("`temperature` is deprecated for this model.".into()), "{m}");
            assert_eq!(sampled(json!({"model": m, "top_p": 1})), Err("`top_p` is deprecated for this model.".into()), "{m}");
            assert_eq!(sampled(json!({"model": m, "top_k": 0})), Err("`top_k` is deprecated for this model.".into()), "{m}");
            assert_eq!(sampled(json!({"model": m, "temperature": 1, "top_p": null})), Ok(()), "{m}");
        }
        for m in ["claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5"] {
            assert_eq!(sampled(json!({"model": m, "temperature": 0.5, "top_k": 5})), Ok(()), "{m}");
        }
    }

    #[test]
    fn model_families() {
        assert_eq!(version("claude-3-7-sonnet-20250219"), Some((3, 7)));
        assert_eq!(version("claude-sonnet-4-20250514"), Some((4, 0)));
        assert_eq!(version("us.anthropic.claude-opus-4-1-20250805-v1:0"), Some((4, 1)));
        assert_eq!(version("claude-opus-4.7"), Some((4, 7)));
        assert_eq!(version("claude-mythos-preview"), None);
        assert!(!thinks("claude-3-5-haiku-20241022") && !thinks("claude-3-haiku-20240307") && thinks("claude-3-7-sonnet-latest"));
        assert!(adaptive_only("claude-opus-4-8") && adaptive_only("claude-sonnet-5") && adaptive_only("claude-mythos-preview"));
        assert!(!adaptive_only("claude-sonnet-4-6") && !adaptive_only("claude-opus-4-6") && !adaptive_only("claude-haiku-4-5"));
    }

    #[test]
    fn refuses_what_anthropic_refuses() {
        let base = |extra: Value| {
            let mut v = json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        let enabled = json!({"type": "enabled", "budget_tokens": 2048});
        assert!(checked(base(json!({"thinking": enabled})), "").is_ok());
        assert!(checked(base(json!({"thinking": {"type": "enabled", "budget_tokens": 1000}})), "").unwrap_err().contains("greater than or equal to 1024"));
        assert!(checked(base(json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})), "").unwrap_err().contains("must be greater than `thinking.budget_tokens`"));
        assert!(checked(base(json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})), "interleaved-thinking-2025-05-14").is_ok());
        assert!(checked(base(json!({"thinking": enabled, "temperature": 0.2})), "").unwrap_err().contains("temperature"));
        assert!(checked(base(json!({"thinking": enabled, "temperature": 1})), "").is_ok());
        assert!(checked(base(json!({"thinking": enabled, "tool_choice": {"type": "any"}})), "").unwrap_err().contains("forces tool use"));
        assert!(checked(base(json!({"thinking": enabled, "model": "claude-3-5-haiku-20241022"})), "").unwrap_err().contains("does not support thinking"));
        assert!(checked(base(json!({"thinking": enabled, "model": "claude-opus-4-8"})), "").unwrap_err().contains("thinking.type.enabled"));
        assert!(checked(base(json!({"thinking": {"type": "adaptive"}, "model": "claude-opus-4-8"})), "").is_ok());
        assert!(checked(base(json!({"thinking": {"type": "adaptive"}, "model": "claude-sonnet-4-6"})), "").is_ok());
        assert!(checked(base(json!({"thinking": {"type": "adaptive"}})), "").unwrap_err().contains("does not support adaptive thinking"), "Sonnet 4.5");
        // Mid tool loop: the last assistant turn must start with its thinking.
        let lp = |first: Value| json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [first, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]);
        let text = json!({"type": "text", "text": "calling"});
        assert!(checked(base(json!({"thinking": enabled, "messages": lp(text.clone())})), "").unwrap_err().starts_with("messages.1.content.0.type: Expected `thinking`"));
        assert!(checked(base(json!({"thinking": enabled, "messages": lp(json!({"type": "thinking", "thinking": "x", "signature": "s"}))})), "").is_ok());
        assert!(checked(base(json!({"messages": lp(text.clone())})), "").is_ok(), "without thinking there is no such rule");
        let mut joined = lp(text);
        joined.as_array_mut().unwrap().push(json!({"role": "user", "content": "and then?"}));
        assert!(checked(base(json!({"thinking": enabled, "messages": joined})), "").is_err(), "consecutive user turns are one");
        // A final assistant message (a prefill) with thinking, thinking off.
        let prefill = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]);
        assert!(checked(base(json!({"messages": prefill})), "").unwrap_err().contains("When thinking is disabled"));
    }
}
