//! Virtual keys: created, rotated, revoked, found by hash, imported all
//! or none, listed a page at a time, and replayed as changes.

use super::*;

pub(super) fn keys_create_revoke_rotate(s: Arc<dyn Store>) {
    let k = KeyRow { models: Some(vec!["cheap".into()]), ..key("k1", 'a') };
    s.create_key(&k).unwrap();
    assert!(matches!(s.create_key(&k), Err(tollgate_control::store::StoreError::Conflict(_))));
    s.set_key_hash("k1", &"b".repeat(64)).unwrap();
    assert_eq!(s.get_key("k1").unwrap().unwrap().key_hash, "b".repeat(64));
    s.revoke_key("k1", NOW + 1).unwrap();
    assert_eq!(s.get_key("k1").unwrap().unwrap().revoked_ms, Some(NOW + 1));
    assert!(s.set_key_hash("k1", &"c".repeat(64)).is_err(), "a revoked key cannot be rotated back to life");
    assert!(s.revoke_key("nope", NOW).is_err());
}

pub(super) fn a_key_is_found_by_its_hash_until_revoked(s: Arc<dyn Store>) {
    let k = key("kh", 'b');
    s.create_key(&k).unwrap();
    assert_eq!(s.key_by_hash(&"b".repeat(64)).unwrap().map(|k| k.id), Some("kh".to_string()));
    assert!(s.key_by_hash(&"c".repeat(64)).unwrap().is_none());
    s.revoke_key("kh", NOW + 1).unwrap();
    assert!(s.key_by_hash(&"b".repeat(64)).unwrap().is_none(), "a revoked key is no longer found");
}

fn key(id: &str, hash: char) -> KeyRow {
    KeyRow {
        id: id.into(),
        key_hash: hash.to_string().repeat(64),
        team: "t".into(),
        project: "p".into(),
        models: None,
        projects: vec![],
        tags: BTreeMap::new(),
        created_ms: NOW,
        revoked_ms: None,
    }
}

pub(super) fn keys_in_bulk_all_or_none(s: Arc<dyn Store>) {
    let clash = [key("b1", 'a'), key("b2", 'b'), key("b1", 'c')];
    assert!(matches!(s.create_keys(&clash), Err(StoreError::Conflict(_))));
    assert!(s.keys_page(None, usize::MAX).unwrap().1.is_empty(), "a refused batch creates no key");
    s.create_keys(&[key("b1", 'a'), key("b2", 'b')]).unwrap();
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().1.len(), 2);
    let same_hash = [key("b3", 'a')];
    assert!(matches!(s.create_keys(&same_hash), Err(StoreError::Conflict(_))), "two keys cannot share a hash");
    // Batches longer than one statement: a clash in the second statement
    // (the id, then the hash, of a key made before; two keys of the batch
    // with one hash or one id) names its key, and the first statement's keys are not made.
    let many = |n: usize| -> Vec<KeyRow> {
        (0..n).map(|i| KeyRow { id: format!("m{i}"), key_hash: format!("{i:064x}"), ..key("x", 'x') }).collect()
    };
    let conflict = |batch: &[KeyRow]| match s.create_keys(batch) {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("{other:?}"),
    };
    let mut by_id = many(700);
    by_id[650].id = "b2".into();
    assert!(conflict(&by_id).contains("'b2'"));
    let mut by_hash = many(700);
    by_hash[600].key_hash = key("", 'b').key_hash;
    assert!(conflict(&by_hash).contains("'m600'"));
    let mut twice = many(700);
    twice[699].key_hash = twice[3].key_hash.clone();
    assert!(conflict(&twice).contains("'m699'"));
    let mut id_twice = many(700);
    id_twice[690].id = "m5".into();
    assert!(conflict(&id_twice).contains("'m5'"), "two keys of the batch with one id");
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().0, 2, "a refused batch creates no key");
    let seq = s.state_seqs().unwrap().keys;
    s.create_keys(&many(700)).unwrap();
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().0, 702);
    let ch = s.key_changes(seq, 1000).unwrap();
    assert_eq!(ch.changes.len(), 700, "one change each");
    assert_eq!(s.key_by_hash(&format!("{:064x}", 699)).unwrap().unwrap().id, "m699");
}

pub(super) fn keys_are_listed_a_page_at_a_time_in_the_order_they_were_made(s: Arc<dyn Store>) {
    // Made out of id order, two in the same millisecond (then by id).
    let mut ks = vec![key("m", 'a'), key("z", 'b'), key("a", 'c'), key("b", 'd')];
    for (k, at) in ks.iter_mut().zip([NOW + 2, NOW, NOW + 1, NOW + 1]) {
        k.created_ms = at;
    }
    s.create_keys(&ks).unwrap();
    s.revoke_key("a", NOW + 5).unwrap();
    let ids = |(n, v): (u64, Vec<KeyRow>)| (n, v.into_iter().map(|k| k.id).collect::<Vec<_>>());
    assert_eq!(ids(s.keys_page(None, 3).unwrap()), (4, vec!["z".to_string(), "a".into(), "b".into()]));
    assert_eq!(ids(s.keys_page(Some("a"), 2).unwrap()), (4, vec!["b".to_string(), "m".into()]), "revoked keys keep their place");
    assert_eq!(ids(s.keys_page(Some("m"), 2).unwrap()), (4, vec![]));
    assert_eq!(ids(s.keys_page(Some("no-such-key"), 2).unwrap()), (4, vec![]));
    assert_eq!(s.keys_page(None, usize::MAX).unwrap().1.into_iter().map(|k| k.id).collect::<Vec<_>>(), ["z", "a", "b", "m"]);
}

pub(super) fn key_changes_replay_to_the_live_key_set(s: Arc<dyn Store>) {
    use std::collections::BTreeSet;
    use tollgate_protocol::state::KeyChange;
    // Applies every change after `since` in pages of `page`, as an Envoy does.
    fn replay(s: &dyn Store, since: &mut u64, page: u32, set: &mut BTreeSet<String>) {
        loop {
            let p = s.key_changes(*since, page).unwrap();
            for c in &p.changes {
                match c {
                    KeyChange::Put { key } => set.insert(key.key_hash.clone()),
                    KeyChange::Del { key_hash } => set.remove(key_hash),
                };
            }
            assert!(p.seq >= *since);
            *since = p.seq;
            if !p.more {
                break;
            }
        }
    }
    let live = |s: &dyn Store| s.keys_page(None, usize::MAX).unwrap().1.into_iter().filter(|k| k.revoked_ms.is_none()).map(|k| k.key_hash).collect::<BTreeSet<_>>();
    assert_eq!(s.state_seqs().unwrap().keys, 0);
    s.create_keys(&(0..7).map(|i| key(&format!("c{i}"), char::from(b'a' + i))).collect::<Vec<_>>()).unwrap();
    let (mut since, mut set) = (0, BTreeSet::new());
    replay(&*s, &mut since, 3, &mut set);
    assert_eq!(set, live(&*s));
    assert_eq!(since, s.state_seqs().unwrap().keys);
    // revoke, rotate twice (the middle hash must not survive), create
    s.revoke_key("c1", NOW).unwrap();
    s.revoke_key("c1", NOW).unwrap(); // again: no change
    s.set_key_hash("c2", &"x".repeat(64)).unwrap();
    s.set_key_hash("c2", &"y".repeat(64)).unwrap();
    s.create_key(&key("c9", 'z')).unwrap();
    replay(&*s, &mut since, 2, &mut set);
    assert_eq!(set, live(&*s));
    assert!(!set.contains(&"b".repeat(64)) && !set.contains(&"c".repeat(64)) && !set.contains(&"x".repeat(64)));
    assert!(set.contains(&"y".repeat(64)) && set.contains(&"z".repeat(64)));
    // a fresh Envoy replaying from 0 gets the same set
    let (mut s0, mut set0) = (0, BTreeSet::new());
    replay(&*s, &mut s0, 1000, &mut set0);
    assert_eq!(set0, set);
    // nothing new: an empty page at the same sequence
    let p = s.key_changes(since, 10).unwrap();
    assert_eq!((p.seq, p.more, p.changes.len()), (since, false, 0));
}
