//! Models of different quality, deterministically, for evaluations: a
//! request whose last message starts with `TASK: add A B` gets an answer
//! whose correctness depends on the model the mock is asked for, and a
//! request starting with `JUDGE:` is graded like an LLM judge would.
//!
//! | upstream model contains | answers `TASK: add A B` | with `response_format` json |
//! |---|---|---|
//! | `mini` (good and cheap) | always right | right, but in a ```json fence (needs repair) |
//! | `deepseek` (cheap, bad) | right only when A + B is even | broken JSON when A + B is a multiple of 3 |
//! | anything else (the incumbent) | always right | plain JSON |
//!
//! `JUDGE:` prompts carry `TASK: add A B`, `REFERENCE: …` and `CANDIDATE: …`
//! lines; the judge answers `VERDICT: PASS` when the candidate holds the
//! right sum, `VERDICT: FAIL` otherwise — unless its model contains
//! `broken`, which answers something no parser can read. Any other prompt
//! is not a task (`None`): the mock's usual answer.

use serde_json::Value;

/// The sum a `TASK: add A B` line asks for.
fn task_sum(text: &str) -> Option<i64> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix("TASK: add "))?;
    let mut it = line.split_whitespace().map(|n| n.parse::<i64>().ok());
    let (a, b) = (it.next()??, it.next()??);
    a.checked_add(b)
}

/// The answer text for the last message `text` from `model`, or `None`.
pub fn answer(model: &str, text: &str, json_mode: bool) -> Option<String> {
    let text = text.trim_start();
    if text.starts_with("JUDGE:") {
        if model.contains("broken") {
            return Some("Well, it depends on how you look at it.".into());
        }
        let sum = task_sum(text)?;
        let candidate = text.lines().find_map(|l| l.strip_prefix("CANDIDATE:")).unwrap_or_default();
        let right = candidate.split(|c: char| !c.is_ascii_digit() && c != '-').any(|n| n == sum.to_string());
        return Some(format!("The candidate {} the task.\nVERDICT: {}", if right { "solves" } else { "does not solve" }, if right { "PASS" } else { "FAIL" }));
    }
    if !text.starts_with("TASK:") {
        return None;
    }
    let sum = task_sum(text)?;
    let (right, fenced, broken) = if model.contains("mini") {
        (true, true, false)
    } else if model.contains("deepseek") {
        (sum % 2 == 0, false, sum % 3 == 0)
    } else {
        (true, false, false)
    };
    let value = if right { sum } else { sum + 1 };
    Some(match (json_mode, fenced, broken) {
        (false, _, _) => format!("The answer is {value}."),
        (true, _, true) => format!("{{\"answer\": {value}"),
        (true, true, _) => format!("Here it is:\n```json\n{{\"answer\": {value}}}\n```"),
        (true, false, false) => format!("{{\"answer\": {value}}}"),
    })
}

/// Whether a chat request asks for JSON (`response_format` json_object or json_schema).
pub fn wants_json(req: &Value) -> bool {
    matches!(req.pointer("/response_format/type").and_then(Value::as_str), Some("json_object" | "json_schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_by_model() {
        assert_eq!(answer("gpt-5.4", "TASK: add 2 3", false).unwrap(), "The answer is 5.");
        assert_eq!(answer("gpt-5.4-mini", "TASK: add 2 3", true).unwrap(), "Here it is:\n```json\n{\"answer\": 5}\n```");
        assert_eq!(answer("deepseek-v4", "TASK: add 2 3", false).unwrap(), "The answer is 6.", "odd sums go wrong");
        assert_eq!(answer("deepseek-v4", "TASK: add 2 4", true).unwrap(), "{\"answer\": 6", "multiples of 3 break the JSON");
        assert_eq!(answer("gpt-5.4", "hello", false), None);
        let judge = "JUDGE: grade\nTASK: add 2 3\nREFERENCE: 5\nCANDIDATE: The answer is 5.";
        assert!(answer("gpt-5.4", judge, false).unwrap().ends_with("VERDICT: PASS"));
        assert!(answer("gpt-5.4", &judge.replace("is 5", "is 6"), false).unwrap().ends_with("VERDICT: FAIL"));
        assert!(!answer("judge-broken", judge, false).unwrap().contains("VERDICT"));
    }
}
