//! The test template every storage backend passes: the memory backend and the directory backend
//! (through `openat2` and through the fallback walk) in unit tests, and, later, object storage
//! against a real server.
//! [`run`] panics with a message naming the failed property.

use std::io::{Read, Write};

use super::{list_keys, list_narinfo_names, Committed, Put, StorageWrite};
use crate::cache::layout::{CacheKey, KeyDir};

const HASH_A: &str = "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy";
const HASH_B: &str = "12221svl9zlcqbffq6hxanhsxsk7wlyr";

fn key(name: &str) -> CacheKey {
    CacheKey::parse(name).expect("a valid key in the conformance suite")
}

fn read_all(storage: &dyn StorageWrite, k: &CacheKey) -> Option<Vec<u8>> {
    let mut object = storage.open(k).expect("open")?;
    let mut out = Vec::new();
    object.body.read_to_end(&mut out).expect("read");
    assert_eq!(object.meta.size, out.len() as u64, "{k}: size from open");
    Some(out)
}

/// Runs every check on an empty storage.
pub fn run(storage: &dyn StorageWrite) {
    storage.prepare().expect("prepare");
    empty(storage);
    small_objects(storage);
    staging(storage);
    conditional_writes(storage);
    listing(storage);
    locks(storage);
    #[cfg(not(target_arch = "wasm32"))]
    concurrent_writers(storage);
}

fn empty(storage: &dyn StorageWrite) {
    let k = key(&format!("{HASH_A}.narinfo"));
    assert!(storage.stat(&k).unwrap().is_none(), "stat of a missing key");
    assert!(storage.open(&k).unwrap().is_none(), "open of a missing key");
    assert!(storage.read_small(&k, 10).unwrap().is_none());
    assert!(!storage.delete(&k).unwrap(), "delete of a missing key");
    for dir in KeyDir::ALL {
        let (keys, strays) = list_keys(storage, dir).unwrap();
        assert!(keys.is_empty() && strays.is_empty(), "{dir:?} is empty");
    }
}

fn small_objects(storage: &dyn StorageWrite) {
    let k = key("nix-cache-info");
    storage.put(&k, b"StoreDir: /nix/store\n").unwrap();
    let meta = storage.stat(&k).unwrap().expect("stat after put");
    assert_eq!(meta.size, 21);
    assert_eq!(
        storage.read_small(&k, 21).unwrap().as_deref(),
        Some(&b"StoreDir: /nix/store\n"[..])
    );
    let err = storage.read_small(&k, 20).unwrap_err();
    assert!(
        err.to_string().contains("larger than 20 bytes"),
        "limit: {err}"
    );
    let (meta2, mut range) = storage.read_range(&k, 10, 5).unwrap().unwrap();
    assert_eq!(meta2, meta);
    let mut part = String::new();
    range.read_to_string(&mut part).unwrap();
    assert_eq!(part, "/nix/");
    let (_, mut tail) = storage.read_range(&k, 15, 100).unwrap().unwrap();
    let mut rest = Vec::new();
    tail.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"store\n", "a range past the end is cut");
    storage.put(&k, b"StoreDir: /other\n").unwrap();
    let replaced = storage.stat(&k).unwrap().unwrap();
    assert_ne!(replaced.etag, meta.etag, "replacing changes the ETag");
    assert_eq!(read_all(storage, &k).unwrap(), b"StoreDir: /other\n");
}

fn staging(storage: &dyn StorageWrite) {
    let k = key("nar/0a.nar.zst");
    let mut staged = storage.stage(KeyDir::Nar).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for chunk in big.chunks(4096) {
        staged.write_all(chunk).unwrap();
    }
    assert!(storage.stat(&k).unwrap().is_none(), "staged is not visible");
    let (keys, strays) = list_keys(storage, KeyDir::Nar).unwrap();
    assert!(
        keys.is_empty() && strays.is_empty(),
        "a staged object is neither a key nor a stray: {keys:?} {strays:?}"
    );
    storage.barrier().unwrap();
    assert_eq!(
        staged.commit(&k, Put::IfAbsent).unwrap(),
        Committed::Written
    );
    assert_eq!(read_all(storage, &k).unwrap(), big);

    let mut again = storage.stage(KeyDir::Nar).unwrap();
    again.write_all(b"other").unwrap();
    assert_eq!(
        again.commit(&k, Put::IfAbsent).unwrap(),
        Committed::AlreadyThere
    );
    assert_eq!(
        read_all(storage, &k).unwrap(),
        big,
        "IfAbsent kept the object"
    );

    let mut dropped = storage.stage(KeyDir::Nar).unwrap();
    dropped.write_all(b"abandoned").unwrap();
    drop(dropped);
    let (keys, strays) = list_keys(storage, KeyDir::Nar).unwrap();
    assert_eq!(keys, vec![k.clone()], "a dropped stage leaves nothing");
    assert!(strays.is_empty());
    let raw: Vec<String> = storage
        .list(KeyDir::Nar)
        .unwrap()
        .map(|n| n.unwrap())
        .collect();
    assert_eq!(
        raw,
        vec![k.file_name()],
        "nothing else in the folder, not even a hidden temporary"
    );

    let wrong = storage.stage(KeyDir::Nar).unwrap();
    assert!(
        wrong.commit(&key("nix-cache-info"), Put::Replace).is_err(),
        "a commit into another folder is refused"
    );
    assert!(storage.delete(&k).unwrap());
    assert!(storage.stat(&k).unwrap().is_none(), "deleted");
}

fn conditional_writes(storage: &dyn StorageWrite) {
    let k = key(&format!("{HASH_B}.narinfo"));
    assert!(storage.put_if_absent(&k, b"one").unwrap());
    assert!(!storage.put_if_absent(&k, b"two").unwrap());
    assert_eq!(read_all(storage, &k).unwrap(), b"one");
    let etag = storage.stat(&k).unwrap().unwrap().etag;
    assert!(!storage.replace_if_unchanged(&k, b"x", None).unwrap());
    assert!(!storage
        .replace_if_unchanged(&k, b"x", Some("\"not-the-etag\""))
        .unwrap());
    assert!(storage
        .replace_if_unchanged(&k, b"three", Some(&etag))
        .unwrap());
    assert!(
        !storage
            .replace_if_unchanged(&k, b"four", Some(&etag))
            .unwrap(),
        "the old ETag no longer matches"
    );
    assert_eq!(read_all(storage, &k).unwrap(), b"three");
    let fresh = key(&format!("{HASH_A}.ls"));
    assert!(storage.replace_if_unchanged(&fresh, b"{}", None).unwrap());
    assert!(storage.delete(&fresh).unwrap());
    assert!(storage.delete(&k).unwrap());
}

fn listing(storage: &dyn StorageWrite) {
    let names = [
        format!("{HASH_A}.narinfo"),
        format!("{HASH_B}.narinfo"),
        format!("{HASH_A}.ls"),
        "nar/1b.nar".to_string(),
        "log/x-hello.drv".to_string(),
    ];
    for n in &names {
        storage.put(&key(n), n.as_bytes()).unwrap();
    }
    let (root, strays) = list_keys(storage, KeyDir::Root).unwrap();
    assert!(strays.is_empty());
    let root: Vec<String> = root.iter().map(|k| k.to_string()).collect();
    let mut want = vec![
        "nix-cache-info".to_string(),
        names[0].clone(),
        names[1].clone(),
        names[2].clone(),
    ];
    want.sort();
    let mut got = root.clone();
    got.sort();
    assert_eq!(got, want, "root listing");
    assert_eq!(
        list_narinfo_names(storage).unwrap(),
        vec![names[1].clone(), names[0].clone()],
        "narinfo names, sorted"
    );
    let (nars, _) = list_keys(storage, KeyDir::Nar).unwrap();
    assert_eq!(nars, vec![key("nar/1b.nar")]);
    let (logs, _) = list_keys(storage, KeyDir::Log).unwrap();
    assert_eq!(logs, vec![key("log/x-hello.drv")]);
    for n in &names {
        assert!(storage.delete(&key(n)).unwrap());
    }
}

fn locks(storage: &dyn StorageWrite) {
    assert!(
        storage.lock("../x", true, false).is_err(),
        "lock names checked"
    );
    let shared = storage.lock("gc", false, false).unwrap().expect("shared");
    let shared2 = storage
        .lock("gc", false, false)
        .unwrap()
        .expect("shared twice");
    assert!(
        storage.lock("gc", true, false).unwrap().is_none(),
        "exclusive while shared is held"
    );
    drop(shared);
    drop(shared2);
    let exclusive = storage.lock("gc", true, false).unwrap().expect("exclusive");
    assert!(storage.lock("gc", false, false).unwrap().is_none());
    assert!(
        storage.lock("other", true, false).unwrap().is_some(),
        "locks are by name"
    );
    drop(exclusive);
    assert!(
        storage.lock("gc", true, true).unwrap().is_some(),
        "released on drop"
    );
}

#[cfg(not(target_arch = "wasm32"))]
fn concurrent_writers(storage: &dyn StorageWrite) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let winners: Vec<AtomicUsize> = (0..25).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let winners = &winners;
            s.spawn(move || {
                for i in 0..25u8 {
                    let k = key(&format!("nar/t{t}i{i}.nar"));
                    let mut staged = storage.stage(KeyDir::Nar).unwrap();
                    staged.write_all(&[t, i]).unwrap();
                    staged.commit(&k, Put::Replace).unwrap();
                    // Every thread races for one key per round: exactly one wins.
                    let shared = key(&format!("nar/shared{i}.nar"));
                    let mut staged = storage.stage(KeyDir::Nar).unwrap();
                    staged.write_all(&[b'w', t]).unwrap();
                    if staged.commit(&shared, Put::IfAbsent).unwrap() == Committed::Written {
                        winners[i as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    for (i, w) in winners.iter().enumerate() {
        assert_eq!(
            w.load(Ordering::Relaxed),
            1,
            "round {i}: one IfAbsent commit wins"
        );
        let bytes = read_all(storage, &key(&format!("nar/shared{i}.nar"))).unwrap();
        assert!(
            bytes.len() == 2 && bytes[0] == b'w',
            "round {i}: a whole object"
        );
    }
    let (nars, strays) = list_keys(storage, KeyDir::Nar).unwrap();
    assert_eq!(nars.len(), 125, "every committed object is listed once");
    assert!(strays.is_empty());
    for k in nars {
        storage.delete(&k).unwrap();
    }
}
