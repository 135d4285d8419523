use std::collections::BTreeSet;

use super::format::{self, decode_manifest, encode};
use super::publish::{self, publish, read_current, StorageSource};
use super::reader::{IndexReader, Step};
use super::*;
use crate::cache::storage::memory::MemoryStorage;
use crate::cache::storage::{StorageRead, StorageWrite};
use crate::nixbase32;

/// A store path whose hash part starts with `n` in nixbase32 (so that paths sort as `n`s do).
fn path(n: u32, name: &str) -> StorePath {
    let mut digest = [0u8; 20];
    digest[..4].copy_from_slice(&n.to_be_bytes());
    // nixbase32 encodes the last byte first: reverse so that order follows `n`.
    digest.reverse();
    StorePath::from_parts(&digest, name).unwrap()
}

fn content(entries: &[(u32, &str, &[u32])]) -> IndexContent {
    let mut c = IndexContent::new(StoreDir::default());
    for (n, name, refs) in entries {
        c.paths.insert(
            path(*n, name),
            EntryInfo {
                nar_size: u64::from(*n) * 100,
                file_size: Some(u64::from(*n) * 10),
                references: refs
                    .iter()
                    .map(|r| {
                        entries
                            .iter()
                            .find(|e| e.0 == *r)
                            .map(|e| path(e.0, e.1))
                            .unwrap_or_else(|| path(*r, "absent"))
                    })
                    .collect(),
            },
        );
    }
    c
}

fn reader_of(c: &IndexContent) -> (IndexReader, Vec<(String, Vec<u8>)>) {
    let (json, _, shards) = encode(c);
    (IndexReader::new(&json).unwrap(), shards)
}

#[allow(non_snake_case)]
fn Shards(shards: Vec<(String, Vec<u8>)>, manifest: Vec<u8>) -> reader::Encoded {
    reader::Encoded { manifest, shards }
}

#[test]
fn paths_are_sorted_by_hash_part() {
    assert!(path(1, "z") < path(2, "a"));
    assert!(path(255, "z") < path(256, "a"));
}

#[test]
fn encoding_is_deterministic_and_decodes_to_the_same_content() {
    let c = content(&[(1, "a", &[2, 9]), (2, "b", &[2]), (3, "c", &[1, 2])]);
    let (json, manifest, shards) = encode(&c);
    assert_eq!(encode(&c).0, json);
    assert_eq!(manifest.paths, 3);
    assert_eq!(manifest.entries, 4, "the absent reference is an entry");
    let mut r = IndexReader::new(&json).unwrap();
    r.answer(&Shards(shards, json.clone()), IndexReader::all_shards)
        .unwrap();
    assert_eq!(
        IndexContent::from_shards(StoreDir::default(), &r.loaded_shards()).unwrap(),
        c
    );
}

#[test]
fn a_large_index_is_split_into_shards_and_a_lookup_reads_only_what_it_needs() {
    let n = format::SHARD_ENTRIES as u32 * 3 + 5;
    let mut c = IndexContent::new(StoreDir::default());
    for i in 0..n {
        c.paths.insert(
            path(i, &format!("p{i}")),
            EntryInfo {
                nar_size: 1,
                file_size: None,
                references: [path((i + n / 2) % n, &format!("p{}", (i + n / 2) % n))].into(),
            },
        );
    }
    let (mut r, shards) = reader_of(&c);
    assert_eq!(r.manifest().shards.len(), 4);
    let (json, _, _) = encode(&c);
    let source = Shards(shards, json);
    let wanted = path(7, "p7");
    let id = r.answer(&source, |r| r.find(wanted.hash_part())).unwrap();
    let record = r
        .answer(&source, |r| r.record(id.unwrap(), true))
        .unwrap()
        .unwrap();
    assert_eq!(record.name, "p7");
    assert_eq!(
        record.references,
        [StoreDir::default().display(&path(7 + n / 2, &format!("p{}", 7 + n / 2)))]
    );
    assert_eq!(record.referrers.as_ref().unwrap().len(), 1);
    assert_eq!(
        r.loaded_shards().len(),
        2,
        "its own shard and its reference's"
    );
    assert_eq!(
        r.answer(&source, |r| r.find(path(n + 1, "x").hash_part()))
            .unwrap(),
        None
    );
}

#[test]
fn names_match_by_prefix_first_then_inside() {
    let c = content(&[
        (1, "libfoo-1", &[]),
        (2, "foo-2", &[]),
        (3, "bar", &[]),
        (4, "foo-1", &[]),
    ]);
    let (mut r, shards) = reader_of(&c);
    let (json, _, _) = encode(&c);
    let source = Shards(shards, json);
    let ids = r.answer(&source, |r| r.search_name("foo")).unwrap();
    let names: Vec<String> = ids
        .iter()
        .map(|&id| r.entry(id).unwrap().path.name().to_string())
        .collect();
    assert_eq!(names, ["foo-1", "foo-2", "libfoo-1"]);
}

#[test]
fn why_depends_over_the_index_is_the_shortest_chain() {
    let c = content(&[
        (1, "app", &[2, 3]),
        (2, "lib", &[4]),
        (3, "big", &[5]),
        (5, "mid", &[4]),
        (4, "libc", &[]),
    ]);
    let (mut r, shards) = reader_of(&c);
    let (json, _, _) = encode(&c);
    let source = Shards(shards, json);
    let from = r
        .answer(&source, |r| r.find(path(1, "app").hash_part()))
        .unwrap()
        .unwrap();
    let g = r.answer(&source, |r| r.closure_graph(&[from])).unwrap();
    let chain: Vec<String> = g
        .why_depends(&path(1, "app"), &path(4, "libc"))
        .unwrap()
        .into_iter()
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(chain, ["app", "lib", "libc"]);
}

#[test]
fn hostile_manifests_are_refused_with_what_is_wrong() {
    let c = content(&[(1, "a", &[])]);
    let (json, _, _) = encode(&c);
    let good: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("version", serde_json::json!({"version": 2}), "version 2"),
        ("entries", serde_json::json!({"entries": 5}), "not 5"),
        (
            "paths",
            serde_json::json!({"paths": 9}),
            "9 paths of 1 entries",
        ),
        (
            "shardEntries",
            serde_json::json!({"shardEntries": 0}),
            "shardEntries 0",
        ),
        (
            "storeDir",
            serde_json::json!({"storeDir": "rel"}),
            "storeDir",
        ),
        (
            "name",
            serde_json::json!({"shards": [{"name": "../x.zst", "first": good["shards"][0]["first"], "count": 1, "size": 10}]}),
            "not <52 nixbase32 characters>.zst",
        ),
        (
            "size",
            serde_json::json!({"shards": [{"name": good["shards"][0]["name"], "first": good["shards"][0]["first"], "count": 1, "size": 1u64 << 40}]}),
            "claims",
        ),
        ("unknown", serde_json::json!({"extra": 1}), "unknown field"),
    ];
    for (what, patch, expected) in cases {
        let mut v = good.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        let err = decode_manifest(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
    assert!(decode_manifest(b"{").is_err());
    assert!(decode_manifest(&vec![b' '; format::MAX_MANIFEST_BYTES as usize + 1]).is_err());
}

#[test]
fn hostile_shards_are_refused() {
    let c = content(&[(1, "a", &[2]), (2, "b", &[])]);
    let (json, manifest, shards) = encode(&c);
    let text = |lines: &str| {
        ruzstd::encoding::compress_to_vec(
            lines.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        )
    };
    let p1 = path(1, "a");
    let p2 = path(2, "b");
    let cases = [
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t1\t\n{p2}\t1\t-\t\t0\n"),
            None,
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t7\t\n{p2}\t1\t-\t\t0\n"),
            Some("is not an entry"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p2}\t1\t-\t\t\n{p1}\t1\t-\t\t\n"),
            Some("its first entry"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t1,1\t\n{p2}\t1\t-\t\t0\n"),
            Some("not ascending"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t-\t5\t\t\n{p2}\t1\t-\t\t0\n"),
            Some("without a narinfo"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t1\n"),
            Some("4 tab-separated"),
        ),
        (
            format!("nar-tool-index-shard 1 0 3\n{p1}\t1\t-\t1\t\n"),
            Some("first line"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\tx\t-\t1\t\n"),
            Some("not a number"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t1\t\n"),
            Some("1 entries; the manifest says 2"),
        ),
        (
            format!("nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t1\t\n{p2}\t1\t-\t\t0;1\n"),
            Some("referrer ids are not"),
        ),
    ];
    for (lines, expected) in cases {
        let bytes = text(&lines);
        let mut m = manifest.clone();
        m.shards[0].name = format::shard_name(&bytes);
        m.shards[0].size = bytes.len() as u64;
        let got = format::decode_shard(&m, 0, &bytes);
        match expected {
            None => assert!(got.is_ok(), "{lines}: {got:?}"),
            Some(e) => {
                let err = got.unwrap_err().to_string();
                assert!(err.contains(e), "{lines}: {err}");
            }
        }
    }
    // Referrers are checked when read: ids beyond the index are an error then.
    let bytes = text(&format!(
        "nar-tool-index-shard 1 0 2\n{p1}\t1\t-\t1\t\n{p2}\t1\t-\t\t9\n"
    ));
    let mut m = manifest.clone();
    m.shards[0].name = format::shard_name(&bytes);
    m.shards[0].size = bytes.len() as u64;
    let shard = format::decode_shard(&m, 0, &bytes).unwrap();
    let err = shard.entries[1].referrer_ids(2).unwrap_err().to_string();
    assert!(err.contains("referrer id \"9\" is not an entry"), "{err}");
    // Bytes that are not the shard the manifest names.
    let mut r = IndexReader::new(&json).unwrap();
    let err = r.add_shard(0, &text("x")).unwrap_err().to_string();
    assert!(err.contains("not the"), "{err}");
    assert!(r.add_shard(0, &shards[0].1).is_ok());
}

#[test]
fn queries_are_read_as_a_store_path_a_hash_part_or_a_name() {
    let d = StoreDir::default();
    let p = path(3, "hello-2.12");
    let hash = p.hash_part().to_string();
    for text in [
        d.display(&p),
        format!("{}/bin/hello", d.display(&p)),
        p.base_name().to_string(),
        hash.clone(),
    ] {
        assert_eq!(
            Query::parse(&d, &text),
            Query::HashPart(hash.clone()),
            "{text}"
        );
    }
    assert_eq!(Query::parse(&d, "hello"), Query::Name("hello".into()));
}

#[test]
fn publishing_replaces_the_index_whole_and_retires_old_shards() {
    let storage = MemoryStorage::new();
    let first = content(&[(1, "a", &[])]);
    let done = publish(&storage, |current| {
        assert!(current.is_none());
        Ok(first.clone())
    })
    .unwrap();
    assert!(done.changed);
    let again = publish(&storage, |_| Ok(first.clone())).unwrap();
    assert!(!again.changed, "the same content writes nothing");
    let second = content(&[(1, "a", &[]), (2, "b", &[1])]);
    publish(&storage, |current| {
        assert_eq!(current, Some(&first));
        Ok(second.clone())
    })
    .unwrap();
    assert_eq!(read_current(&storage).unwrap().unwrap().content, second);
    let shards: Vec<String> = storage
        .list(crate::cache::layout::KeyDir::Index)
        .unwrap()
        .map(Result::unwrap)
        .filter(|n| format::is_shard_name(n))
        .collect();
    assert_eq!(shards.len(), 1, "the first index's shard was deleted");
}

#[test]
fn a_writer_that_loses_the_race_merges_into_the_winners_index() {
    let storage = MemoryStorage::new();
    publish(&storage, |_| Ok(content(&[(1, "a", &[])]))).unwrap();
    let mut tries = 0;
    publish(&storage, |current| {
        tries += 1;
        if tries == 1 {
            // Another writer adds a path between this one's read and its manifest.
            publish(&storage, |c| {
                let mut c = c.unwrap().clone();
                c.paths.extend(content(&[(2, "b", &[])]).paths);
                Ok(c)
            })
            .unwrap();
        }
        let mut c = current.unwrap().clone();
        c.paths.extend(content(&[(3, "c", &[])]).paths);
        Ok(c)
    })
    .unwrap();
    assert_eq!(tries, 2);
    let names: BTreeSet<String> = read_current(&storage)
        .unwrap()
        .unwrap()
        .content
        .paths
        .keys()
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(names, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
}

#[test]
fn sweep_keeps_shards_of_unknown_age() {
    let storage = MemoryStorage::new();
    publish(&storage, |_| Ok(content(&[(1, "a", &[])]))).unwrap();
    let stray = format!("{}.zst", nixbase32::encode(&[7u8; 32]));
    storage
        .put(&publish::key(&stray).unwrap(), b"junk")
        .unwrap();
    // Memory objects have no age: an unknown age counts as young.
    assert_eq!(publish::sweep(&storage, u64::MAX, 3600).unwrap(), 0);
    assert!(
        read_current(&storage).unwrap().is_some(),
        "the index's own shard stays"
    );
    let (json, _, _) = encode(&content(&[(1, "a", &[])]));
    let mut r = IndexReader::new(&json).unwrap();
    let found = r
        .answer(&StorageSource(&storage), |r| {
            r.find(path(1, "a").hash_part())
        })
        .unwrap();
    assert_eq!(found, Some(0));
    assert!(matches!(r.find("x"), Step::Done(_)));
}
