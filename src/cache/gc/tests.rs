//! Tests of the collection's plan (golden cases and properties on random graphs) and of a run
//! over memory storage.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::plan::{self, Entry, Inventory, Policy};
use super::roots::Root;
use super::run::{self, Options};
use crate::cache::layout::CacheKey;
use crate::cache::storage::lease::Lease;
use crate::cache::storage::memory::MemoryStorage;
use crate::cache::storage::{ObjectMeta, StorageRead, StorageWrite};
use crate::store_path::StorePath;

/// Store path number `i` (paths sort by number).
fn p(i: usize) -> StorePath {
    StorePath::from_base_name(&format!("{}{i:03}-p{i}", "0".repeat(29))).unwrap()
}

fn nar(n: usize) -> CacheKey {
    CacheKey::parse(&format!("nar/n{n}.nar")).unwrap()
}

/// An inventory of paths `(i, references, nar number, modified)`, every NAR present.
fn inventory(paths: &[(usize, Vec<usize>, usize, u64)]) -> Inventory {
    let mut inv = Inventory::default();
    for (i, refs, n, modified) in paths {
        let path = p(*i);
        inv.listings.insert(path.hash_part().to_string());
        inv.nars.insert(nar(*n));
        inv.entries.insert(
            path.hash_part().to_string(),
            Entry {
                path,
                references: refs.iter().map(|r| p(*r)).collect(),
                nar: Some(nar(*n)),
                nar_size: 1000,
                file_size: Some(100),
                modified: Some(*modified),
            },
        );
    }
    inv
}

fn root(i: usize) -> Root {
    Root {
        path: p(i),
        source: "test".into(),
    }
}

/// NAR metadata: 100 bytes, modified at 0 (old), or at `young` for the NARs listed there.
fn meta(young: &'static [usize]) -> impl FnMut(&CacheKey) -> std::io::Result<Option<ObjectMeta>> {
    move |k| {
        let n: usize = k.file_name()[1..].trim_end_matches(".nar").parse().unwrap();
        Ok(Some(ObjectMeta {
            size: 100,
            modified: Some(if young.contains(&n) { 1000 } else { 0 }),
            etag: String::new(),
        }))
    }
}

fn policy() -> Policy {
    Policy {
        now: 1000,
        grace: 10,
        ..Policy::default()
    }
}

fn plan_of(inv: &Inventory, roots: &[usize], pol: &Policy) -> plan::Plan {
    let g = plan::graph(inv);
    let mut all: Vec<Root> = roots.iter().map(|r| root(*r)).collect();
    all.extend(plan::recent_roots(inv, pol));
    plan::plan(inv, &g, all, &BTreeSet::new(), pol, meta(&[])).unwrap()
}

fn doomed(plan: &plan::Plan) -> Vec<StorePath> {
    plan.narinfos.iter().map(|d| d.path.clone()).collect()
}

#[test]
fn golden_roots_closure_and_referrers_first() {
    // 1 → 2 → 3; 4 → 2; 5 → 6 → 7; 8 alone. Root: 1.
    let inv = inventory(&[
        (1, vec![2], 1, 0),
        (2, vec![3], 2, 0),
        (3, vec![], 3, 0),
        (4, vec![2], 4, 0),
        (5, vec![6], 5, 0),
        (6, vec![7], 6, 0),
        (7, vec![], 7, 0),
        (8, vec![], 8, 0),
    ]);
    let plan = plan_of(&inv, &[1], &policy());
    assert_eq!(plan.live, vec![p(1), p(2), p(3)]);
    assert_eq!(doomed(&plan), vec![p(4), p(5), p(6), p(7), p(8)]);
    assert_eq!(
        plan.nars.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![nar(4), nar(5), nar(6), nar(7), nar(8)]
    );
    assert_eq!(plan.listings.len(), 5);
    let s = &plan.summary;
    assert_eq!(
        (s.paths_kept, s.paths_freed, s.bytes_kept, s.bytes_freed),
        (3, 5, 300, 500)
    );
}

#[test]
fn golden_shared_nar_kept_while_one_narinfo_names_it() {
    // 1 and 2 share NAR 9; 3 and 4 share NAR 8 and both die.
    let inv = inventory(&[
        (1, vec![], 9, 0),
        (2, vec![], 9, 0),
        (3, vec![], 8, 0),
        (4, vec![], 8, 0),
    ]);
    let plan = plan_of(&inv, &[1], &policy());
    assert_eq!(doomed(&plan), vec![p(2), p(3), p(4)]);
    assert_eq!(
        plan.nars.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![nar(8)]
    );
}

#[test]
fn golden_self_references_and_missing_roots() {
    // 1 → 1, 2; 2 → 2; 3 → 3 (dead, refers only to itself).
    let inv = inventory(&[
        (1, vec![1, 2], 1, 0),
        (2, vec![2], 2, 0),
        (3, vec![3], 3, 0),
    ]);
    let plan = plan_of(&inv, &[1, 7], &policy());
    assert_eq!(plan.live, vec![p(1), p(2)]);
    assert_eq!(doomed(&plan), vec![p(3)]);
    assert_eq!(plan.missing_roots, vec![root(7)]);
}

#[test]
fn golden_keep_since_and_grace() {
    // 1 written at 995 (recent with --keep-since 10) → 2; 3 old. NAR 3 young (grace).
    let inv = inventory(&[(1, vec![2], 1, 995), (2, vec![], 2, 0), (3, vec![], 3, 0)]);
    let pol = Policy {
        keep_since: Some(10),
        ..policy()
    };
    let g = plan::graph(&inv);
    let roots = plan::recent_roots(&inv, &pol);
    assert_eq!(
        roots.iter().map(|r| r.path.clone()).collect::<Vec<_>>(),
        vec![p(1)]
    );
    let plan = plan::plan(&inv, &g, roots, &BTreeSet::new(), &pol, meta(&[3])).unwrap();
    assert_eq!(doomed(&plan), vec![p(3)]);
    assert!(plan.nars.is_empty(), "NAR 3 is in its grace period");
    assert_eq!(plan.summary.nars_in_grace, 1);
    // Without --keep-since everything goes.
    assert_eq!(plan_of(&inv, &[], &policy()).narinfos.len(), 3);
}

#[test]
fn golden_max_freed_takes_orphans_first_then_a_prefix() {
    // Orphan NAR 9 (no narinfo); chain 1 → 2 → 3, nothing live.
    let mut inv = inventory(&[(1, vec![2], 1, 0), (2, vec![3], 2, 0), (3, vec![], 3, 0)]);
    inv.nars.insert(nar(9));
    let pol = Policy {
        max_freed: Some(150),
        ..policy()
    };
    let plan = plan_of(&inv, &[], &pol);
    assert_eq!(doomed(&plan), vec![p(1)]);
    assert_eq!(
        plan.nars.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![nar(9), nar(1)]
    );
    assert!(plan.summary.stopped_at_max_freed);
}

#[test]
fn pinned_nars_and_unreadable_narinfos_stay() {
    let mut inv = inventory(&[(1, vec![], 1, 0)]);
    inv.unreadable
        .push((p(2).hash_part().to_string(), "bad".into()));
    inv.listings.insert(p(2).hash_part().to_string());
    let g = plan::graph(&inv);
    let pinned = BTreeSet::from([nar(1)]);
    let plan = plan::plan(&inv, &g, vec![], &pinned, &policy(), meta(&[])).unwrap();
    assert_eq!(doomed(&plan), vec![p(1)]);
    assert!(plan.nars.is_empty());
    assert_eq!(plan.listings, vec![p(1).hash_part().to_string()]);
    assert_eq!(plan.summary.unreadable_kept, 1);
}

#[test]
fn why_gives_the_shortest_chain_from_a_root() {
    let inv = inventory(&[
        (1, vec![2], 1, 0),
        (2, vec![3], 2, 0),
        (3, vec![], 3, 0),
        (4, vec![3], 4, 0),
    ]);
    let g = plan::graph(&inv);
    let roots = vec![root(1), root(4)];
    let (r, chain) = plan::why(&g, &roots, &p(3)).unwrap();
    assert_eq!(r.path, p(4));
    assert_eq!(chain, vec![&p(4), &p(3)]);
    assert!(plan::why(&g, &roots, &p(5)).is_none());
}

/// Random caches: DAGs (edges to lower numbers) with self-references, NARs shared at random.
/// A random cache: paths (number, references, NAR number, modified), roots, `max_freed`.
type ArbCache = (
    Vec<(usize, Vec<usize>, usize, u64)>,
    Vec<usize>,
    Option<u64>,
);

fn arb_cache() -> impl Strategy<Value = ArbCache> {
    (2usize..40).prop_flat_map(|n| {
        let nodes = (0..n)
            .map(|i| {
                (
                    proptest::collection::vec(0..=i, 0..4),
                    0..(n / 2 + 1),
                    prop::bool::ANY,
                )
            })
            .collect::<Vec<_>>();
        (
            nodes,
            proptest::collection::vec(0..n + 3, 0..4),
            proptest::option::of(0u64..2000),
        )
            .prop_map(|(nodes, roots, max)| {
                let paths = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (refs, nar, recent))| (i, refs, nar, if recent { 999 } else { 0 }))
                    .collect();
                (paths, roots, max)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_prefix_of_the_plan_keeps_the_cache_valid((paths, roots, max) in arb_cache(), keep_since in prop::bool::ANY) {
        let inv = inventory(&paths);
        let pol = Policy { max_freed: max, keep_since: keep_since.then_some(5), ..policy() };
        let plan = plan_of(&inv, &roots, &pol);
        let refs: BTreeMap<StorePath, Vec<StorePath>> =
            inv.entries.values().map(|e| (e.path.clone(), e.references.clone())).collect();
        let live: BTreeSet<&StorePath> = plan.live.iter().collect();
        // Never a live path (closure of the roots, recent narinfos included).
        for d in &plan.narinfos {
            prop_assert!(!live.contains(&d.path));
            prop_assert!(!roots.iter().any(|r| p(*r) == d.path));
            if keep_since { prop_assert!(inv.entries[&d.hash_part].modified != Some(999)); }
        }
        // After any prefix, the surviving narinfos are closed under references.
        let mut surviving: BTreeSet<StorePath> = refs.keys().cloned().collect();
        for d in &plan.narinfos {
            surviving.remove(&d.path);
            for s in &surviving {
                for r in &refs[s] {
                    prop_assert!(surviving.contains(r), "{s} lost its reference {r}");
                }
            }
        }
        // A NAR goes only once no surviving narinfo names it.
        let named: BTreeSet<CacheKey> = inv.entries.values()
            .filter(|e| surviving.contains(&e.path)).filter_map(|e| e.nar.clone()).collect();
        for (k, _) in &plan.nars {
            prop_assert!(!named.contains(k), "{k} deleted while named");
        }
        // Without a limit, exactly the dead go and every unnamed NAR with them.
        if max.is_none() {
            prop_assert_eq!(surviving.len(), live.len());
            let all: BTreeSet<&CacheKey> = inv.nars.iter().collect();
            let freed: BTreeSet<&CacheKey> = plan.nars.iter().map(|(k, _)| k).collect();
            prop_assert_eq!(freed.len() + named.len(), all.len());
        }
    }
}

/// A narinfo's text, for storage tests.
pub(crate) fn narinfo_text(path: &StorePath, refs: &[StorePath], nar: &CacheKey) -> String {
    let refs: Vec<&str> = refs.iter().map(|r| r.base_name()).collect();
    format!(
        "StorePath: /nix/store/{path}\nURL: {nar}\nCompression: none\nNarHash: sha256:{}\nNarSize: 8\nReferences: {}\n",
        "0".repeat(52),
        refs.join(" ")
    )
}

fn store(paths: &[(usize, Vec<usize>, usize)]) -> MemoryStorage {
    let s = MemoryStorage::new();
    for (i, refs, n) in paths {
        let refs: Vec<StorePath> = refs.iter().map(|r| p(*r)).collect();
        let key = CacheKey::narinfo(p(*i).hash_part()).unwrap();
        s.put(&key, narinfo_text(&p(*i), &refs, &nar(*n)).as_bytes())
            .unwrap();
        s.put(&nar(*n), b"nar").unwrap();
    }
    s
}

fn narinfos(s: &MemoryStorage) -> Vec<StorePath> {
    let mut out: Vec<StorePath> = run::inventory(s, 1)
        .unwrap()
        .entries
        .into_values()
        .map(|e| e.path)
        .collect();
    out.sort();
    out
}

#[test]
fn a_run_deletes_the_dead_and_spares_leases() {
    let s = store(&[
        (1, vec![2], 1),
        (2, vec![], 2),
        (3, vec![4], 3),
        (4, vec![], 4),
        (5, vec![], 4),
    ]);
    let (lease, closure) = run::lease_closure(&s, &[p(3)], |p| p.to_string()).unwrap();
    assert_eq!(closure, vec![p(3), p(4)]);
    let opts = Options {
        roots: vec![root(1)],
        ..Options::default()
    };
    let dry = run::collect(
        &s,
        &Options {
            dry_run: true,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(dry.deleted, vec![p(5)]);
    let out = run::collect(&s, &opts).unwrap();
    assert_eq!(
        out.deleted, dry.deleted,
        "--dry-run tells what the run then deletes"
    );
    assert_eq!(narinfos(&s), vec![p(1), p(2), p(3), p(4)]);
    assert!(
        s.stat(&nar(4)).unwrap().is_some(),
        "NAR 4 is shared with the leased path 4"
    );
    drop(lease);
    let out = run::collect(&s, &opts).unwrap();
    assert_eq!(out.deleted, vec![p(3), p(4)]);
    assert_eq!(narinfos(&s), vec![p(1), p(2)]);
    assert!(s.stat(&nar(4)).unwrap().is_none() && s.stat(&nar(3)).unwrap().is_none());
}

/// A writer that leases a path and a reference it finds present, publishes the path and ends
/// its lease — all between the collection's listing and a deletion batch.
fn publish_leased(s: &MemoryStorage, i: usize, refs: &[usize], n: usize) {
    let mut lease = s.lease().unwrap();
    let names: Vec<String> = std::iter::once(i)
        .chain(refs.iter().copied())
        .map(|j| p(j).base_name().to_string())
        .collect();
    lease.extend(&names).unwrap();
    let refs: Vec<StorePath> = refs.iter().map(|r| p(*r)).collect();
    s.put(&nar(n), b"nar").unwrap();
    let key = CacheKey::narinfo(p(i).hash_part()).unwrap();
    s.put(&key, narinfo_text(&p(i), &refs, &nar(n)).as_bytes())
        .unwrap();
    drop(lease);
}

#[test]
fn what_a_writer_published_outlives_its_lease() {
    // 2 and 3 are dead when the cache is listed. After that, before the plan, a writer
    // publishes 4 (referring to 2) and ends its lease.
    let s = store(&[(1, vec![], 1), (2, vec![], 2), (3, vec![], 3)]);
    s.before_exclusive_batch(|s| publish_leased(s, 4, &[2], 4));
    let opts = Options {
        roots: vec![root(1)],
        batch: 1,
        ..Options::default()
    };
    let out = run::collect(&s, &opts).unwrap();
    assert_eq!(out.deleted, vec![p(3)], "2 is now referred to by 4");
    assert_eq!(narinfos(&s), vec![p(1), p(2), p(4)]);
    assert!(s.stat(&nar(2)).unwrap().is_some() && s.stat(&nar(3)).unwrap().is_none());

    // Now 2 and 4 are dead: the first batch deletes 4, then 4 is published again (its writer
    // found it missing) before the batch that would delete 2. (The first hook runs when the
    // collection reads the leases for its plan.)
    s.before_exclusive_batch(|_| {});
    s.before_exclusive_batch(|_| {});
    s.before_exclusive_batch(|s| publish_leased(s, 4, &[2], 4));
    let out = run::collect(&s, &opts).unwrap();
    assert_eq!(out.deleted, vec![p(4)], "4 deleted, then published again");
    assert_eq!(narinfos(&s), vec![p(1), p(2), p(4)]);
    assert!(
        s.stat(&nar(4)).unwrap().is_some(),
        "the NAR of the new 4 stays"
    );

    // A NAR whose narinfo appears between NAR batches stays.
    let s = store(&[(1, vec![], 1)]);
    s.put(&nar(7), b"nar").unwrap();
    s.put(&nar(8), b"nar").unwrap();
    s.before_exclusive_batch(|_| {});
    s.before_exclusive_batch(|s| publish_leased(s, 7, &[], 7));
    let out = run::collect(&s, &opts).unwrap();
    assert_eq!(out.summary.nars_freed, 1);
    assert!(s.stat(&nar(7)).unwrap().is_some() && s.stat(&nar(8)).unwrap().is_none());
}

#[test]
fn a_path_leased_before_it_is_published_again_keeps_its_nar() {
    // 2, 3 and 4 are dead; the narinfo batches delete them. Then a writer leases 4 (finding it
    // missing), and before the next NAR batch leases NAR 9, writes it, publishes 4 naming it
    // and ends its lease.
    let s = store(&[
        (1, vec![], 1),
        (2, vec![], 2),
        (3, vec![], 3),
        (4, vec![], 9),
    ]);
    let held: std::sync::Arc<std::sync::Mutex<Option<Box<dyn Lease>>>> = Default::default();
    for _ in 0..4 {
        s.before_exclusive_batch(|_| {}); // the plan's reading of leases, 3 narinfo batches
    }
    let h = held.clone();
    s.before_exclusive_batch(move |s| {
        let mut lease = s.lease().unwrap();
        lease.extend(&[p(4).base_name().to_string()]).unwrap();
        *h.lock().unwrap() = Some(lease);
    });
    let h = held.clone();
    s.before_exclusive_batch(move |s| {
        let mut lease = h.lock().unwrap().take().unwrap();
        lease.extend(&[nar(9).to_string()]).unwrap();
        s.put(&nar(9), b"nar").unwrap();
        let key = CacheKey::narinfo(p(4).hash_part()).unwrap();
        s.put(&key, narinfo_text(&p(4), &[], &nar(9)).as_bytes())
            .unwrap();
    });
    let opts = Options {
        roots: vec![root(1)],
        batch: 1,
        ..Options::default()
    };
    let out = run::collect(&s, &opts).unwrap();
    assert_eq!(out.deleted.len(), 3);
    assert_eq!(narinfos(&s), vec![p(1), p(4)]);
    assert!(
        s.stat(&nar(9)).unwrap().is_some(),
        "the NAR of 4 was deleted"
    );
}

#[test]
fn a_lease_on_a_missing_path_fails() {
    let s = store(&[(1, vec![2], 1)]);
    let e = run::lease_closure(&s, &[p(9)], |p| p.to_string())
        .err()
        .unwrap();
    assert!(e.to_string().contains("is not in the cache"), "{e}");
    // A reference missing from the cache fails too: the closure would not be whole.
    let e = run::lease_closure(&s, &[p(1)], |p| p.to_string())
        .err()
        .unwrap();
    assert!(e.to_string().contains(&p(2).to_string()), "{e}");
    assert!(
        s.live_leases(true).unwrap().is_empty(),
        "a failed lease is dropped"
    );
}

#[test]
fn one_collection_at_a_time() {
    let s = store(&[(1, vec![], 1)]);
    let held = s.gc_lock().unwrap().unwrap();
    let e = run::collect(&s, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("another collection"), "{e}");
    drop(held);
    assert_eq!(
        run::collect(&s, &Options::default()).unwrap().deleted,
        vec![p(1)]
    );
}

/// What a writer racing a collection does before one of its deletion batches.
#[derive(Debug, Clone)]
enum Act {
    /// Publish path `i` as `build-cache` does: lease it and its references, find each reference
    /// present (or give up), lease its NAR, write the NAR and then the narinfo, end the lease.
    Publish(usize),
    /// Lease the closure of path `i` as `keep-paths` does, and hold it.
    Hold(usize),
    /// End the `k`-th lease held (modulo their number).
    Release(usize),
}

fn arb_act(n: usize) -> impl Strategy<Value = Act> {
    prop_oneof![
        (0..n).prop_map(Act::Publish),
        (0..n).prop_map(Act::Hold),
        (0..4usize).prop_map(Act::Release),
    ]
}

type Universe = BTreeMap<usize, (Vec<usize>, usize)>;
type Held = std::sync::Arc<std::sync::Mutex<Vec<(Vec<StorePath>, Box<dyn Lease>)>>>;

fn publish(s: &MemoryStorage, universe: &Universe, i: usize) {
    let (refs, n) = &universe[&i];
    let mut lease = s.lease().unwrap();
    let names: Vec<String> = std::iter::once(&i)
        .chain(refs)
        .map(|j| p(*j).base_name().to_string())
        .collect();
    lease.extend(&names).unwrap();
    let present = |j: &usize| {
        s.stat(&CacheKey::narinfo(p(*j).hash_part()).unwrap())
            .unwrap()
            .is_some()
    };
    if present(&i) || !refs.iter().filter(|r| **r != i).all(present) {
        return; // there already, or a reference is gone: a builder would build it first
    }
    lease.extend(&[nar(*n).to_string()]).unwrap();
    if s.stat(&nar(*n)).unwrap().is_none() {
        s.put(&nar(*n), b"nar").unwrap();
    }
    let refs: Vec<StorePath> = refs.iter().map(|r| p(*r)).collect();
    let key = CacheKey::narinfo(p(i).hash_part()).unwrap();
    s.put(&key, narinfo_text(&p(i), &refs, &nar(*n)).as_bytes())
        .unwrap();
}

/// Every narinfo's references and NAR are there, and every held lease's closure is whole.
fn assert_valid(s: &MemoryStorage, held: &Held, when: &str) {
    let inv = run::inventory(s, 1).unwrap();
    let present: BTreeSet<&StorePath> = inv.entries.values().map(|e| &e.path).collect();
    for e in inv.entries.values() {
        for r in &e.references {
            assert!(
                present.contains(r),
                "{when}: {} lost its reference {r}",
                e.path
            );
        }
        let nar = e.nar.as_ref().unwrap();
        assert!(inv.nars.contains(nar), "{when}: {} lost its NAR", e.path);
    }
    for (closure, _) in held.lock().unwrap().iter() {
        for path in closure {
            assert!(present.contains(path), "{when}: the leased {path} is gone");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Writers and holders acting before every deletion batch (batches of one deletion) never
    /// make the cache invalid or lose a leased path; once they are gone, one more collection
    /// leaves exactly the roots' closure.
    #[test]
    fn writers_and_holders_racing_a_collection((paths, roots, _) in arb_cache(), acts in proptest::collection::vec(arb_act(40), 1..40)) {
        let universe: Universe = paths.iter().map(|(i, refs, n, _)| (*i, (refs.clone(), *n))).collect();
        let s = store(&paths.iter().map(|(i, refs, n, _)| (*i, refs.clone(), *n)).collect::<Vec<_>>());
        let held: Held = Default::default();
        let universe = std::sync::Arc::new(universe);
        for (k, act) in acts.into_iter().enumerate() {
            let (universe, held) = (universe.clone(), held.clone());
            s.before_exclusive_batch(move |s| {
                match act {
                    Act::Publish(i) if universe.contains_key(&i) => publish(s, &universe, i),
                    Act::Hold(i) => {
                        if let Ok((lease, closure)) = run::lease_closure(s, &[p(i)], |p| p.to_string()) {
                            held.lock().unwrap().push((closure, lease));
                        }
                    }
                    Act::Release(k) => {
                        let mut held = held.lock().unwrap();
                        if !held.is_empty() {
                            let n = held.len();
                            held.remove(k % n);
                        }
                    }
                    Act::Publish(_) => {}
                }
                assert_valid(s, &held, &format!("after action {k}"));
            });
        }
        let opts = Options {
            roots: roots.iter().map(|r| root(*r)).collect(),
            batch: 1,
            ..Options::default()
        };
        run::collect(&s, &opts).unwrap();
        assert_valid(&s, &held, "after the collection");
        held.lock().unwrap().clear();
        // Hooks not used are used now, by a second collection; then one more with no writers.
        run::collect(&s, &opts).unwrap();
        assert_valid(&s, &held, "after the second collection");
        while s.has_batch_hooks() {
            run::collect(&s, &opts).unwrap();
        }
        held.lock().unwrap().clear();
        run::collect(&s, &opts).unwrap();
        let mut live: BTreeSet<StorePath> = BTreeSet::new();
        let mut todo: Vec<usize> = roots.iter().copied().filter(|r| universe.contains_key(r)).collect();
        while let Some(i) = todo.pop() {
            if live.insert(p(i)) {
                todo.extend(universe[&i].0.iter().copied());
            }
        }
        prop_assert_eq!(narinfos(&s).into_iter().collect::<BTreeSet<_>>(), live);
    }
}
