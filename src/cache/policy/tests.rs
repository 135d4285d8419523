//! The cases of Nix's own tests (`tests/check-refs.nix`, `tests/check-reqs.nix`), as graphs,
//! and what Nix's `checkOutputs` does beyond them.

use super::*;

/// A store path named `name`, its hash part its first letter (`z` for one nixbase32 lacks):
/// paths of one letter sort by name.
fn sp(name: &str) -> StorePath {
    let first = name.chars().next().unwrap();
    let first = if "eotu".contains(first) { 'z' } else { first };
    StorePath::from_base_name(&format!("{}-{name}", first.to_string().repeat(32))).unwrap()
}

fn graph(edges: &[(&str, &[&str])]) -> Graph {
    let mut g = Graph::new();
    for (from, to) in edges {
        g.insert(sp(from), to.iter().map(|t| sp(t)));
    }
    g
}

fn set(names: &[&str]) -> Option<BTreeSet<StorePath>> {
    Some(names.iter().map(|n| sp(n)).collect())
}

fn policy(constraint: Constraint, names: &[&str]) -> ReferencePolicy {
    let mut p = ReferencePolicy::default();
    p.set(constraint, set(names));
    p
}

/// The offenders of each violation of `path`, by name, with the list broken.
fn offenders(p: &ReferencePolicy, g: &Graph, path: &str) -> Vec<(Constraint, Vec<String>)> {
    p.check(g, &sp(path))
        .unwrap()
        .into_iter()
        .map(|v| {
            assert_eq!(v.path, sp(path));
            assert!(!v.offenders.is_empty());
            let names = v
                .offenders
                .iter()
                .map(|o| o.path.name().to_string())
                .collect();
            (v.constraint, names)
        })
        .collect()
}

use Constraint::*;

/// check-refs.nix: `dep` (itself with a reference), test outputs `t1`… referring to it, to
/// themselves, or to nothing; `aux-ref` a source.
fn refs_graph() -> Graph {
    graph(&[
        ("dep", &["input2"]),
        ("input2", &[]),
        ("aux-ref", &[]),
        ("test3", &["dep"]),
        ("test4", &["dep"]),
        ("test5", &[]),
        ("test6", &["test6"]),
        ("test7", &["test7"]),
        ("test9", &["dep"]),
        ("test10", &["dep"]),
    ])
}

#[test]
fn check_refs_cases() {
    let g = refs_graph();
    // test3: an empty allowedReferences and a reference: fails, naming it.
    let p = policy(AllowedReferences, &[]);
    assert_eq!(
        offenders(&p, &g, "test3"),
        [(AllowedReferences, vec!["dep".into()])]
    );
    // test4: the reference allowed.
    assert!(offenders(&policy(AllowedReferences, &["dep"]), &g, "test4").is_empty());
    // test5: no references, an empty list: passes.
    assert!(offenders(&p, &g, "test5").is_empty());
    // test6: a self-reference is a reference: an empty list refuses it.
    assert_eq!(
        offenders(&p, &g, "test6"),
        [(AllowedReferences, vec!["test6".into()])]
    );
    // test7: allowed when listed ("out" in Nix: the path itself).
    assert!(offenders(&policy(AllowedReferences, &["test7"]), &g, "test7").is_empty());
    // test9: a disallowed reference.
    assert_eq!(
        offenders(&policy(DisallowedReferences, &["dep"]), &g, "test9"),
        [(DisallowedReferences, vec!["dep".into()])]
    );
    // test10: disallowing a path not referenced passes.
    assert!(offenders(&policy(DisallowedReferences, &["test5"]), &g, "test10").is_empty());
    // References are direct: dep's own reference is not one of test4's.
    assert!(offenders(&policy(AllowedReferences, &["dep"]), &g, "test4").is_empty());
    assert!(offenders(&policy(DisallowedReferences, &["input2"]), &g, "test4").is_empty());
}

#[test]
fn a_self_reference_counts_for_references_but_never_for_requisites() {
    let g = refs_graph();
    assert_eq!(
        offenders(&policy(DisallowedReferences, &["test6"]), &g, "test6"),
        [(DisallowedReferences, vec!["test6".into()])]
    );
    // Requisites leave the path itself out, whether or not it refers to itself.
    assert!(offenders(&policy(DisallowedRequisites, &["test6"]), &g, "test6").is_empty());
    assert!(offenders(&policy(AllowedRequisites, &[]), &g, "test6").is_empty());
    assert!(offenders(&policy(AllowedRequisites, &[]), &g, "test5").is_empty());
    assert!(offenders(&policy(DisallowedRequisites, &["test5"]), &g, "test5").is_empty());
    // The offender's chain of a self-reference: the path, twice.
    let v = policy(AllowedReferences, &[])
        .check(&g, &sp("test6"))
        .unwrap();
    assert_eq!(v[0].offenders[0].chain, [sp("test6"), sp("test6")]);
}

/// check-reqs.nix: `deps` refers to `dep1` and `dep2`; each test output refers to `deps`.
fn reqs_graph() -> Graph {
    graph(&[
        ("dep1", &[]),
        ("dep2", &[]),
        ("deps", &["dep1", "dep2"]),
        ("test", &["deps"]),
        ("other", &[]),
    ])
}

#[test]
fn check_reqs_cases() {
    let g = reqs_graph();
    let fails = |list: &[&str]| offenders(&policy(AllowedRequisites, list), &g, "test");
    // test1: every requisite listed (and "out", the path itself) passes.
    assert!(fails(&["test", "dep1", "dep2", "deps"]).is_empty());
    // … and so does the list without the path itself: it is not one of its requisites.
    assert!(fails(&["dep1", "dep2", "deps"]).is_empty());
    // test2, test3, test4, test5: anything missing fails, and every offender is named.
    let names = |n: &[&str]| vec![(AllowedRequisites, n.iter().map(|s| s.to_string()).collect())];
    assert_eq!(fails(&["dep2", "deps"]), names(&["dep1"]));
    assert_eq!(fails(&["dep1", "deps"]), names(&["dep2"]));
    assert_eq!(fails(&["deps"]), names(&["dep1", "dep2"]));
    assert_eq!(fails(&[]), names(&["dep1", "dep2", "deps"]));
    // test6: a disallowed requisite two references away.
    let p = policy(DisallowedRequisites, &["dep1"]);
    assert_eq!(
        offenders(&p, &g, "test"),
        [(DisallowedRequisites, vec!["dep1".into()])]
    );
    // … which is not a reference.
    assert!(offenders(&policy(DisallowedReferences, &["dep1"]), &g, "test").is_empty());
    // test7: disallowing a path outside the closure passes.
    assert!(offenders(&policy(DisallowedRequisites, &["other"]), &g, "test").is_empty());
}

#[test]
fn chains_lead_to_each_offender() {
    let g = reqs_graph();
    let v = policy(AllowedRequisites, &[])
        .check(&g, &sp("test"))
        .unwrap();
    let chains: Vec<Vec<StorePath>> = v[0].offenders.iter().map(|o| o.chain.clone()).collect();
    assert_eq!(
        chains,
        [
            vec![sp("test"), sp("deps"), sp("dep1")],
            vec![sp("test"), sp("deps"), sp("dep2")],
            vec![sp("test"), sp("deps")],
        ]
    );
}

#[test]
fn every_list_broken_is_reported_in_nix_order() {
    let g = reqs_graph();
    let p = ReferencePolicy {
        disallowed_requisites: set(&["dep2"]),
        allowed_references: set(&[]),
        disallowed_references: set(&["other"]),
        allowed_requisites: set(&["deps", "dep1"]),
    };
    assert_eq!(
        offenders(&p, &g, "test"),
        [
            (AllowedReferences, vec!["deps".into()]),
            (AllowedRequisites, vec!["dep2".into()]),
            (DisallowedRequisites, vec!["dep2".into()]),
        ]
    );
    // Several paths, each checked once, in the order given.
    let all = p
        .check_all(&g, [&sp("deps"), &sp("test"), &sp("deps")])
        .unwrap();
    let who: Vec<(String, Constraint)> = all
        .iter()
        .map(|v| (v.path.name().to_string(), v.constraint))
        .collect();
    assert_eq!(
        who,
        [
            ("deps".into(), AllowedReferences),
            ("deps".into(), AllowedRequisites),
            ("deps".into(), DisallowedRequisites),
            ("test".into(), AllowedReferences),
            ("test".into(), AllowedRequisites),
            ("test".into(), DisallowedRequisites),
        ]
    );
}

#[test]
fn no_list_checks_nothing_and_an_unknown_path_is_an_error() {
    let g = reqs_graph();
    let p = ReferencePolicy::default();
    assert!(p.is_empty());
    assert!(p.check(&g, &sp("test")).unwrap().is_empty());
    assert!(!policy(AllowedReferences, &[]).is_empty());
    assert_eq!(p.check(&g, &sp("unknown")), Err(NotInGraph(sp("unknown"))));
    // A reference without an entry (an incomplete closure) is still a requisite.
    let g = graph(&[("test", &["deps"]), ("deps", &["dep1"])]);
    assert_eq!(
        offenders(&policy(AllowedRequisites, &["deps"]), &g, "test"),
        [(AllowedRequisites, vec!["dep1".into()])]
    );
}

#[test]
fn messages_are_nix_s_then_the_chains() {
    let g = reqs_graph();
    let dir = StoreDir::default();
    let v = policy(AllowedRequisites, &["deps"])
        .check(&g, &sp("test"))
        .unwrap();
    let (t, d, d1, d2) = (
        dir.display(&sp("test")),
        dir.display(&sp("deps")),
        dir.display(&sp("dep1")),
        dir.display(&sp("dep2")),
    );
    assert_eq!(
        v[0].nix_message(&dir),
        format!("output '{t}' is not allowed to refer to the following paths:\n  {d1}\n  {d2}")
    );
    assert_eq!(
        render_all(&v, &dir),
        format!(
            "output '{t}' is not allowed to refer to the following paths:\n  {d1}\n  {d2}\n\
             not in allowedRequisites; the chains of references:\n  \
             {t} → {d} → {d1}\n  {t} → {d} → {d2}"
        )
    );
    let v = policy(DisallowedReferences, &["deps"])
        .check(&g, &sp("test"))
        .unwrap();
    assert!(v[0].render(&dir).ends_with(&format!(
        "\nin disallowedReferences; the chains of references:\n  {t} → {d}"
    )));
}
