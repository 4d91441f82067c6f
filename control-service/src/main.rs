//! `tollgate`: the admin command line.
//!
//! Today: create virtual keys for a static (YAML-configured) deployment.
//! The control service's API and the rest of the CLI arrive with it.

use tollgate_filter::keys::{hash_key, to_hex};

const HELP: &str = "tollgate — Tollgate admin command line

USAGE:
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
