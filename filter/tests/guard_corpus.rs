//! Precision and recall of the built-in detectors on the labelled corpus
//! in tests/guardrails/corpus.jsonl (see its README): realistic prompts,
//! log lines and code with e-mail addresses, phone numbers, card numbers,
//! IBANs, SSNs, IP addresses and secrets, and look-alikes that must not be
//! flagged (UUIDs, timestamps, order and tracking numbers, versions,
//! hashes, prices, dates). Printed by the test; the floor makes it fail.

use std::collections::BTreeMap;

use tollgate_filter::guard::detect::{scan, Class};

#[test]
fn detectors_meet_their_precision_and_recall_floor_on_the_corpus() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guardrails/corpus.jsonl")).unwrap();
    let mut tp: BTreeMap<&str, u64> = BTreeMap::new();
    let mut fp: BTreeMap<&str, u64> = BTreeMap::new();
    let mut fn_: BTreeMap<&str, u64> = BTreeMap::new();
    let mut misses = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = case["text"].as_str().unwrap();
        let mut found: BTreeMap<&str, u64> = BTreeMap::new();
        for h in scan(t) {
            *found.entry(h.class.name()).or_insert(0) += 1;
        }
        for c in Class::ALL {
            let want = case["expect"].get(c.name()).and_then(|v| v.as_u64()).unwrap_or(0);
            let got = found.get(c.name()).copied().unwrap_or(0);
            *tp.entry(c.name()).or_insert(0) += want.min(got);
            *fp.entry(c.name()).or_insert(0) += got.saturating_sub(want);
            *fn_.entry(c.name()).or_insert(0) += want.saturating_sub(got);
            if want != got {
                misses.push(format!("{}: want {want} got {got} in {t:?}", c.name()));
            }
        }
    }
    println!("class    precision  recall   (tp/fp/fn)");
    let (mut t_all, mut p_all, mut n_all) = (0, 0, 0);
    for c in Class::ALL {
        let (t, p, n) = (tp[c.name()], fp[c.name()], fn_[c.name()]);
        (t_all, p_all, n_all) = (t_all + t, p_all + p, n_all + n);
        let prec = if t + p == 0 { 1.0 } else { t as f64 / (t + p) as f64 };
        let rec = if t + n == 0 { 1.0 } else { t as f64 / (t + n) as f64 };
        println!("{:<8} {:>8.3}  {:>7.3}   ({t}/{p}/{n})", c.name(), prec, rec);
        assert!(rec >= 0.9 && prec >= 0.9, "{}: precision {prec:.3} recall {rec:.3}\n{}", c.name(), misses.join("\n"));
    }
    let prec = t_all as f64 / (t_all + p_all) as f64;
    let rec = t_all as f64 / (t_all + n_all) as f64;
    println!("all      {prec:>8.3}  {rec:>7.3}   ({t_all}/{p_all}/{n_all})");
    for m in &misses {
        println!("  miss: {m}");
    }
    assert!(prec >= 0.97 && rec >= 0.97, "overall precision {prec:.3} recall {rec:.3}");
}
