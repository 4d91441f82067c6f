//! `tollgate keys …` and the offline `tollgate key …`.

use serde_json::{json, Value};
use tollgate_protocol::keys::{hash_key, to_hex};

use super::args::{KeyCmd, KeysCmd};
use super::{fail, out, s, Client};

pub fn run(c: &Client, cmd: KeysCmd) {
    match cmd {
        KeysCmd::Create { team, project, id, models, projects, tags } => {
            let mut body = json!({"team": team, "project": project});
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            if let Some(m) = models {
                body["models"] = json!(m.split(',').collect::<Vec<_>>());
            }
            if let Some(p) = projects {
                body["projects"] = json!(p.split(',').collect::<Vec<_>>());
            }
            let mut t = serde_json::Map::new();
            for tag in &tags {
                let (k, v) = tag.split_once('=').unwrap_or_else(|| fail("--tag takes key=value"));
                t.insert(k.into(), json!(v));
            }
            body["tags"] = Value::Object(t);
            let v = c.call("POST", "/v1/keys", Some(body));
            c.print(&v, |v| {
                out(&format!(
                    "key:      {}\nid:       {}\nkey_hash: {}\nteam:     {}\nproject:  {}\n\nThe key is shown once; only its hash is stored.\n",
                    s(&v["key"]),
                    s(&v["id"]),
                    s(&v["key_hash"]),
                    s(&v["team"]),
                    s(&v["project"])
                ))
            });
        }
        KeysCmd::Import { from, made } => super::import::run(&super::import::KEYS, c, &from, made.as_deref()),
        KeysCmd::List { page } => super::list_pages(c, "/v1/keys", "keys", &page, &["id", "team", "project", "status", "models", "created"], key_row),
        KeysCmd::Revoke { id } => {
            let v = c.call("POST", &format!("/v1/keys/{}/revoke", super::path_segment(&id)), None);
            c.print(&v, |_| out(&format!("key {id} revoked; every Envoy refuses it within two polls (about 2 s).\n")));
        }
        KeysCmd::Rotate { id } => {
            let v = c.call("POST", &format!("/v1/keys/{}/rotate", super::path_segment(&id)), None);
            c.print(&v, |v| {
                out(&format!(
                    "new key:  {}\nkey_hash: {}\n\nThe old key stopped working; the new one is shown once.\n",
                    s(&v["key"]),
                    s(&v["key_hash"])
                ))
            });
        }
    }
}

/// Offline: no control service involved.
pub fn offline(json: bool, cmd: KeyCmd) {
    match cmd {
        KeyCmd::New { prefix } => {
            let mut raw = [0u8; 24];
            if let Err(e) = getrandom::fill(&mut raw) {
                fail(&format!("no randomness available: {e}"));
            }
            let key = format!("{prefix}{}", to_hex(&raw));
            let hash = hash_key(&key);
            if json {
                out(&format!("{}\n", json!({"key": key, "key_hash": hash})));
            } else {
                out(&format!(
                    "key:      {key}\nkey_hash: {hash}\n\nThe key is shown once. Put key_hash in the filter configuration (keys[].key_hash).\n"
                ));
            }
        }
        KeyCmd::Hash { key } => {
            let key = if key == "-" {
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line).is_err() {
                    fail("cannot read the key from standard input");
                }
                line.trim().to_string()
            } else {
                key
            };
            if key.is_empty() {
                fail("the key is empty");
            }
            let hash = hash_key(&key);
            out(&if json { format!("{}\n", json!({"key_hash": hash})) } else { format!("{hash}\n") });
        }
    }
}

fn key_row(k: &Value) -> Vec<String> {
    vec![
        s(&k["id"]),
        s(&k["team"]),
        s(&k["project"]),
        s(&k["status"]),
        k["models"].as_array().map(|m| m.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_else(|| "all".into()),
        tollgate_protocol::format::rfc3339(k["created_ms"].as_u64().unwrap_or(0)),
    ]
}
