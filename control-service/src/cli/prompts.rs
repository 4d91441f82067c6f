//! `tollgate prompts …`: the prompt registry.

use serde_json::{json, Value};

use super::args::PromptsCmd;
use super::{fail, out, s, table, Client};

fn when(v: &Value) -> String {
    v.as_u64().map(tollgate_protocol::format::rfc3339).unwrap_or_else(|| "-".into())
}

fn read_json(file: &str) -> Value {
    let text = if file == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(file) };
    let text = text.unwrap_or_else(|e| fail(&format!("cannot read {file}: {e}")));
    serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("{file} is not JSON: {e}")))
}

pub fn run(c: &Client, cmd: PromptsCmd) {
    match cmd {
        PromptsCmd::List => {
            let v = c.call("GET", "/v1/prompts", None);
            c.print(&v, |v| {
                let rows = v["prompts"].as_array().cloned().unwrap_or_default();
                table(
                    &["prompt", "latest", "labels", "changed"],
                    rows.iter()
                        .map(|p| {
                            let labels = p["labels"].as_object().map(|m| m.iter().map(|(l, v)| format!("{l}→{v}")).collect::<Vec<_>>().join(" ")).unwrap_or_default();
                            vec![s(&p["name"]), s(&p["latest"]), labels, when(&p["updated_ms"])]
                        })
                        .collect(),
                );
            });
        }
        PromptsCmd::Show { name } => {
            let v = c.call("GET", &format!("/v1/prompts/{}", super::path_segment(&name)), None);
            c.print(&v, |v| {
                let labels = v["labels"].as_object().map(|m| m.iter().map(|(l, v)| format!("{l}→{v}")).collect::<Vec<_>>().join(" ")).unwrap_or_default();
                out(&format!("{}  labels: {labels}\n", s(&v["name"])));
                let rows = v["versions"].as_array().cloned().unwrap_or_default();
                table(
                    &["version", "tag", "variables", "cacheable prefix", "by", "when", "note"],
                    rows.iter()
                        .map(|x| {
                            let vars = x["variables"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_default();
                            vec![s(&x["version"]), s(&x["tag"]), vars, format!("{} B", s(&x["static_prefix_bytes"])), s(&x["created_by"]), when(&x["created_ms"]), s(&x["note"])]
                        })
                        .collect(),
                );
                out("history:\n");
                for e in v["history"].as_array().cloned().unwrap_or_default() {
                    let what = if e["what"] == "label" { format!("label {} → {}", s(&e["label"]), s(&e["version"])) } else { format!("version {}", s(&e["version"])) };
                    out(&format!("  {}  {}  {what}\n", when(&e["ts_ms"]), s(&e["by"])));
                }
            });
        }
        PromptsCmd::Push { name, file, label, note, by } => {
            let mut body = read_json(&file);
            if !body.is_object() {
                fail(&format!("{file}: a JSON object with 'system' and/or 'messages'"));
            }
            for (k, v) in [("label", label), ("note", note), ("by", by)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let v = c.call("POST", &format!("/v1/prompts/{}/versions", super::path_segment(&name)), Some(body));
            c.print(&v, |v| {
                let state = if v["created"] == true { "new version" } else { "unchanged: same content as" };
                out(&format!("{state} {}\n", s(&v["tag"])));
                if let Some(l) = v["label"].as_str() {
                    out(&format!("label {l} → {}\n", s(&v["version"])));
                }
                for w in v["warnings"].as_array().cloned().unwrap_or_default() {
                    out(&format!("warning: {}\n", s(&w)));
                }
            });
        }
        PromptsCmd::Label { name, label, version, by } => {
            let mut body = json!({"version": version});
            if let Some(b) = by {
                body["by"] = json!(b);
            }
            let v = c.call("PUT", &format!("/v1/prompts/{}/labels/{}", super::path_segment(&name), super::path_segment(&label)), Some(body));
            c.print(&v, |v| out(&format!("{} {} → {}\n", s(&v["name"]), s(&v["label"]), s(&v["version"]))));
        }
        PromptsCmd::Diff { name, from, to } => {
            let mut q = Vec::new();
            if let Some(f) = from {
                q.push(format!("from={f}"));
            }
            if let Some(t) = to {
                q.push(format!("to={t}"));
            }
            let qs = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
            let v = c.call("GET", &format!("/v1/prompts/{}/diff{qs}", super::path_segment(&name)), None);
            c.print(&v, |v| out(v["diff"].as_str().unwrap_or_default()));
        }
    }
}
