use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::cache::index::{format::encode, EntryInfo, IndexContent};

/// A cache of `n` paths with names `p<i>-<i % 5>.0` (every 7th without a version), each
/// referring to a few earlier paths, sometimes itself, sometimes a path without a narinfo.
fn content(n: u32) -> IndexContent {
    let path = |i: u32, name: &str| {
        let digest: [u8; 20] = sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(i.to_le_bytes()),
        )[..20]
            .try_into()
            .unwrap();
        StorePath::from_parts(&digest, name).unwrap()
    };
    let name = |i: u32| match i % 7 {
        0 => format!("P{i}-tool"),
        _ => format!("p{i}-{}.0", i % 5),
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |below: u32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(below.max(1))) as u32
    };
    let mut c = IndexContent::new(StoreDir::default());
    for i in 0..n {
        let mut references = BTreeSet::new();
        for _ in 0..next(5).min(i) {
            let r = next(i);
            references.insert(path(r, &name(r)));
        }
        if i % 3 == 0 {
            references.insert(path(i, &name(i)));
        }
        if i % 11 == 0 {
            references.insert(path(1_000_000 + i, "gone"));
        }
        c.paths.insert(
            path(i, &name(i)),
            EntryInfo {
                nar_size: u64::from(next(1000)) * 7,
                file_size: (i % 4 != 0).then_some(u64::from(i)),
                references,
            },
        );
    }
    c
}

/// A table of `c` with every shard added, in reverse order.
fn table_of(c: &IndexContent) -> IndexTable {
    let (json, _, shards) = encode(c);
    let mut t = IndexTable::new(&json).unwrap();
    for (n, (_, bytes)) in shards.iter().enumerate().rev() {
        t.add_shard(n, bytes).unwrap();
    }
    t
}

#[test]
fn a_complete_table_holds_every_entry_as_encoded() {
    let c = content(1300);
    let t = table_of(&c);
    assert!(t.is_complete());
    assert_eq!(t.manifest().shards.len(), 3);
    let rows: Vec<Row> = t.present_rows().collect();
    assert_eq!(rows.len(), c.paths.len());
    for row in rows {
        let path = StorePath::from_base_name(row.base_name).unwrap();
        let info = &c.paths[&path];
        assert_eq!(row.nar_size, Some(info.nar_size));
        assert_eq!(row.file_size, info.file_size);
        let refs: BTreeSet<StorePath> = row
            .references
            .iter()
            .map(|&r| StorePath::from_base_name(t.row(r).unwrap().unwrap().base_name).unwrap())
            .collect();
        assert_eq!(refs, info.references);
        assert_eq!(t.find(path.hash_part()).unwrap().unwrap(), row);
    }
    assert_eq!(t.find("00000000000000000000000000000000").unwrap(), None);
}

#[test]
fn referrers_are_every_entry_that_references_it() {
    let c = content(1300);
    let mut t = table_of(&c);
    let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, info) in &c.paths {
        for r in &info.references {
            model
                .entry(r.base_name().to_string())
                .or_default()
                .insert(p.base_name().to_string());
        }
    }
    for id in 0..t.manifest().entries as u32 {
        let base = t.row(id).unwrap().unwrap().base_name.to_string();
        let ids = t.referrers(id).unwrap().to_vec();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending");
        let got: BTreeSet<String> = ids
            .iter()
            .map(|&r| t.row(r).unwrap().unwrap().base_name.to_string())
            .collect();
        assert_eq!(got, model.remove(&base).unwrap_or_default(), "{base}");
    }
}

#[test]
fn closures_equal_the_graph_of_the_narinfos() {
    let c = content(1300);
    let t = table_of(&c);
    let mut model = Graph::new();
    for (p, info) in &c.paths {
        model.insert_weighted(
            p.clone(),
            info.references.iter().cloned(),
            Weight {
                nar_size: info.nar_size,
                file_size: info.file_size.unwrap_or(0),
            },
        );
    }
    for (p, _) in c.paths.iter().step_by(97) {
        let id = t.find(p.hash_part()).unwrap().unwrap().id;
        let g = t.closure_graph(&[id]).unwrap();
        assert_eq!(g.closure_with_missing([p]), model.closure_with_missing([p]));
        assert_eq!(g.closure_weight([p]), model.closure_weight([p]));
    }
}

#[test]
fn what_is_not_loaded_is_asked_for_by_shard() {
    let c = content(1300);
    let (json, _, shards) = encode(&c);
    let mut t = IndexTable::new(&json).unwrap();
    assert_eq!(t.missing_shards(), vec![0, 1, 2]);
    let last = c.paths.keys().next_back().unwrap();
    let n = t.shard_of_hash(last.hash_part()).unwrap();
    assert_eq!(t.find(last.hash_part()), Err(n));
    t.add_shard(n, &shards[n].1).unwrap();
    let id = t.find(last.hash_part()).unwrap().unwrap().id;
    assert_eq!(t.referrers(id).unwrap_err(), t.missing_shards());
    // A closure asks for shards until it has them all.
    let mut rounds = 0;
    let graph = loop {
        match t.closure_graph(&[id]) {
            Ok(g) => break g,
            Err(need) => {
                assert!(
                    !need.is_empty()
                        && need
                            .iter()
                            .all(|n| !t.missing_shards().is_empty() && *n < 3)
                );
                for n in need {
                    t.add_shard(n, &shards[n].1).unwrap();
                }
                rounds += 1;
                assert!(rounds <= 3);
            }
        }
    };
    assert!(graph.contains(last));
    // Adding a shard twice changes nothing.
    let loaded = t.loaded_shards();
    t.add_shard(n, &shards[n].1).unwrap();
    assert_eq!(t.loaded_shards(), loaded);
}

#[test]
fn select_sort_and_totals() {
    let c = content(1300);
    let t = table_of(&c);
    let all = t.select("");
    assert_eq!(all.len(), 1300);
    // Case is ignored, hash parts match too.
    let tools = t.select("-TOOL");
    assert_eq!(tools.len(), 1300usize.div_ceil(7));
    let some = c.paths.keys().nth(5).unwrap();
    assert_eq!(t.select(&some.hash_part()[..20]).len(), 1);

    let mut ids = all.clone();
    t.sort(&mut ids, SortKey::NarSize, false);
    let sizes: Vec<u64> = ids
        .iter()
        .map(|&i| t.row(i).unwrap().unwrap().nar_size.unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
    t.sort(&mut ids, SortKey::FileSize, true);
    let files: Vec<Option<u64>> = ids
        .iter()
        .map(|&i| t.row(i).unwrap().unwrap().file_size)
        .collect();
    let known = files.iter().take_while(|f| f.is_some()).count();
    assert!(
        files[known..].iter().all(|f| f.is_none()),
        "no file size goes last"
    );
    assert!(files[..known].windows(2).all(|w| w[0] >= w[1]));

    t.sort(&mut ids, SortKey::Name, false);
    let names: Vec<String> = ids
        .iter()
        .map(|&i| {
            t.row(i)
                .unwrap()
                .unwrap()
                .name_and_version()
                .0
                .to_ascii_lowercase()
        })
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
    t.sort(&mut ids, SortKey::Version, false);
    let first_unversioned = ids
        .iter()
        .position(|&i| t.row(i).unwrap().unwrap().name_and_version().1.is_empty())
        .unwrap();
    assert_eq!(
        ids.len() - first_unversioned,
        tools.len(),
        "no version goes last"
    );

    let w = t.totals(&all);
    assert_eq!(
        w.nar_size,
        c.paths.values().map(|i| i.nar_size).sum::<u64>()
    );
    assert_eq!(
        w.file_size,
        c.paths.values().filter_map(|i| i.file_size).sum::<u64>()
    );
    assert_eq!(SortKey::parse("narSize"), Some(SortKey::NarSize));
    assert_eq!(SortKey::parse("nope"), None);
}

#[test]
fn bad_shards_are_refused_and_change_nothing() {
    let c = content(600);
    let (json, _, shards) = encode(&c);
    let mut t = IndexTable::new(&json).unwrap();
    assert!(matches!(
        t.add_shard(0, &shards[1].1),
        Err(IndexError::Shard { .. })
    ));
    assert!(matches!(
        t.add_shard(7, &shards[0].1),
        Err(IndexError::Read(_))
    ));
    let mut flipped = shards[0].1.clone();
    flipped[10] ^= 1;
    assert!(t.add_shard(0, &flipped).is_err());
    assert_eq!(t.loaded_shards(), 0);
    assert!(IndexTable::new(b"{}").is_err());
}

#[test]
fn a_query_is_a_selection_in_a_kept_order() {
    let c = content(1300);
    let (json, _, shards) = encode(&c);
    let mut t = IndexTable::new(&json).unwrap();
    t.add_shard(1, &shards[1].1).unwrap();
    let check = |t: &mut IndexTable, needle: &str, key, desc| {
        let mut want = t.select(needle);
        t.sort(&mut want, key, desc);
        assert_eq!(
            t.query(needle, key, desc),
            want,
            "{needle:?} {key:?} {desc}"
        );
    };
    check(&mut t, "", SortKey::Name, false);
    check(&mut t, "-2.0", SortKey::Name, false);
    check(&mut t, "-2.0", SortKey::NarSize, true);
    // A shard added since: the kept order is made again.
    t.add_shard(0, &shards[0].1).unwrap();
    check(&mut t, "-2.0", SortKey::NarSize, true);
    check(&mut t, "p1", SortKey::Version, false);
}

#[test]
fn records_and_name_searches_are_the_readers() {
    use crate::cache::index::reader::{IndexReader, Step};
    let c = content(1300);
    let (json, _, shards) = encode(&c);
    let mut t = table_of(&c);
    t.build_referrers().unwrap();
    let mut r = IndexReader::new(&json).unwrap();
    for (n, (_, bytes)) in shards.iter().enumerate() {
        r.add_shard(n, bytes).unwrap();
    }
    for needle in ["p1", "-tool", "3-", "nothing"] {
        assert_eq!(
            Step::Done(t.search_name(needle)),
            r.search_name(needle),
            "{needle}"
        );
    }
    for id in (0..t.manifest().entries as u32).step_by(7) {
        for with in [false, true] {
            let Step::Done(Ok(want)) = r.record(id, with) else {
                panic!("the reader has every shard")
            };
            assert_eq!(t.record(id, with), Some(want), "{id} {with}");
        }
    }
}
