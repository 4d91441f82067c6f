//! `tollgate`: the control service (`tollgate serve`) and the admin command line.

use std::sync::Arc;

use tollgate_control::api::{alert_loop, router, AppState, Settings};
use tollgate_control::sqlite::SqliteStore;
use tollgate_control::{log_event, store::Store};
use tollgate_filter::keys::{hash_key, to_hex};

const HELP: &str = "tollgate — Tollgate admin command line

USAGE:
    tollgate serve [--listen ADDR] [--db PATH]
                                      Run the control service. Settings (flags win over environment):
                                        TOLLGATE_LISTEN        listen address (127.0.0.1:7070)
                                        TOLLGATE_DB            SQLite file (./tollgate.db)
                                        TOLLGATE_ADMIN_TOKEN   admin API token (required)
                                        TOLLGATE_FILTER_TOKEN  token of the Envoy filters: ingest + state only (required)
                                        TOLLGATE_WEBHOOK_URL   where budget alerts are POSTed (optional)
                                        TOLLGATE_NODE_TTL_MS   an Envoy counts as active this long after its last poll (15000)
    tollgate key new [--prefix tg-]   Create a virtual key; prints the key once and its hash
    tollgate key hash <KEY>           Print the SHA3-256 hash to put in the filter's keys[].key_hash
    tollgate key hash -               Same, reading the key from standard input (keeps it out of shell history)

OPTIONS:
    --json      Machine-readable output
    -h, --help  This help
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let rest: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--json").collect();
    match rest.as_slice() {
        [] | ["-h"] | ["--help"] | ["help"] | ["key"] | ["key", "--help"] => print!("{HELP}"),
        ["serve", flags @ ..] => serve(flags),
        ["key", "new", more @ ..] => {
            let prefix = match more {
                [] => "tg-",
                ["--prefix", p] => p,
                _ => fail("usage: tollgate key new [--prefix PREFIX]"),
            };
            let mut raw = [0u8; 24];
            if let Err(e) = getrandom::fill(&mut raw) {
                fail(&format!("no randomness available: {e}"));
            }
            let key = format!("{prefix}{}", to_hex(&raw));
            let hash = hash_key(&key);
            if json {
                println!("{}", serde_json::json!({"key": key, "key_hash": hash}));
            } else {
                println!("key:      {key}\nkey_hash: {hash}\n\nThe key is shown once. Put key_hash in the filter configuration (keys[].key_hash).");
            }
        }
        ["key", "hash", k] => {
            let key = if *k == "-" {
                let mut s = String::new();
                if std::io::stdin().read_line(&mut s).is_err() {
                    fail("cannot read the key from standard input");
                }
                s.trim().to_string()
            } else {
                k.to_string()
            };
            if key.is_empty() {
                fail("the key is empty");
            }
            let hash = hash_key(&key);
            if json {
                println!("{}", serde_json::json!({"key_hash": hash}));
            } else {
                println!("{hash}");
            }
        }
        _ => fail(&format!("unknown command: {}\n\n{HELP}", rest.join(" "))),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tollgate: {msg}");
    std::process::exit(2)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn serve(flags: &[&str]) {
    let mut listen = env_or("TOLLGATE_LISTEN", "127.0.0.1:7070");
    let mut db = env_or("TOLLGATE_DB", "tollgate.db");
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match (*f, it.next()) {
            ("--listen", Some(v)) => listen = v.to_string(),
            ("--db", Some(v)) => db = v.to_string(),
            _ => fail("usage: tollgate serve [--listen ADDR] [--db PATH]"),
        }
    }
    let admin = std::env::var("TOLLGATE_ADMIN_TOKEN").unwrap_or_default();
    let filter = std::env::var("TOLLGATE_FILTER_TOKEN").unwrap_or_default();
    if admin.len() < 16 || filter.len() < 16 {
        fail("TOLLGATE_ADMIN_TOKEN and TOLLGATE_FILTER_TOKEN must be set (16 characters or more each)");
    }
    if admin == filter {
        fail("TOLLGATE_ADMIN_TOKEN and TOLLGATE_FILTER_TOKEN must differ");
    }
    let node_ttl_ms = env_or("TOLLGATE_NODE_TTL_MS", "15000").parse().unwrap_or_else(|_| fail("TOLLGATE_NODE_TTL_MS must be an integer"));
    let store = match SqliteStore::open(std::path::Path::new(&db)) {
        Ok(s) => Arc::new(s) as Arc<dyn Store>,
        Err(e) => fail(&format!("cannot open database {db}: {e}")),
    };
    let settings = Settings {
        admin_token_hash: hash_key(&admin),
        filter_token_hash: hash_key(&filter),
        webhook_url: std::env::var("TOLLGATE_WEBHOOK_URL").ok().filter(|v| !v.is_empty()),
        node_ttl_ms,
    };
    let state = AppState::new(store, settings);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => fail(&format!("cannot listen on {listen}: {e}")),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
        tokio::spawn(alert_loop(state.clone()));
        log_event("info", "listening", serde_json::json!({"addr": addr, "db": db}));
        println!("tollgate control service listening on {addr}");
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            log_event("info", "shutting down", serde_json::json!({}));
        };
        if let Err(e) = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await {
            fail(&format!("server error: {e}"));
        }
    });
}
