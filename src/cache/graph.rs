//! The reference graph of a set of store paths: closures (with the references that have no
//! entry), direct referrers, the shortest chain of references from one path to another
//! (`nix why-depends`), and what a closure weighs: its total size, each path's closure size, and
//! the size each path adds — the paths that are in the closure only through it (its subtree in
//! the closure's dominator tree, as nix-tree's "added size" and nix-du's pictures). Built from
//! (store path → references, sizes) entries — narinfos, store metadata — and grown entry by
//! entry, so a cache explored over the network can ask what it still lacks.
//!
//! Every walk is iterative (a work list, never recursion) and deterministic: references are
//! followed in store path order. A path may refer to itself; that is a reference like any other.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::cache::metadata::PathInfo;
use crate::narinfo::NarInfo;
use crate::store_path::StorePath;

/// Store paths and their references.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Node id → path: every path with an entry or named as a reference.
    paths: Vec<StorePath>,
    ids: HashMap<StorePath, usize>,
    /// Node id → its references, sorted by path; `None` for a path without an entry.
    references: Vec<Option<Vec<usize>>>,
    /// Node id → the nodes whose entries reference it, in no order.
    referrers: Vec<Vec<usize>>,
    /// Node id → its sizes (zero for a path without an entry).
    weights: Vec<Weight>,
    /// The number of paths with an entry.
    entries: usize,
}

/// What paths weigh: NAR bytes, and bytes of their files in the cache (compressed; zero where
/// unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Weight {
    pub nar_size: u64,
    pub file_size: u64,
}

impl std::ops::AddAssign for Weight {
    fn add_assign(&mut self, other: Weight) {
        self.nar_size += other.nar_size;
        self.file_size += other.file_size;
    }
}

/// One path of a closure as [`Graph::closure_tree`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode<'a> {
    pub path: &'a StorePath,
    /// Its own sizes.
    pub weight: Weight,
    /// What it adds to the closure: its own sizes and those of every path that is in the
    /// closure only through it (removing it would remove them too).
    pub added: Weight,
    /// Its immediate dominator: the nearest path every chain of references from the root to it
    /// goes through (`None` for the root). The dominators make a tree whose subtrees' sizes are
    /// the added sizes.
    pub dominator: Option<&'a StorePath>,
}

/// A closure, and the paths it reaches that have no entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Closure<'a> {
    /// Paths with an entry, sorted.
    pub paths: Vec<&'a StorePath>,
    /// Roots and references without an entry, sorted.
    pub missing: Vec<&'a StorePath>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// A graph of narinfos' store paths and references.
    pub fn from_narinfos<'a>(infos: impl IntoIterator<Item = &'a NarInfo>) -> Graph {
        let mut g = Graph::new();
        for info in infos {
            let weight = Weight {
                nar_size: info.nar_size,
                file_size: info.file_size.unwrap_or(0),
            };
            g.insert_weighted(
                info.store_path.clone(),
                info.references.iter().cloned(),
                weight,
            );
        }
        g
    }

    /// A graph of store metadata's paths and references.
    pub fn from_path_infos<'a>(infos: impl IntoIterator<Item = &'a PathInfo>) -> Graph {
        let mut g = Graph::new();
        for info in infos {
            let weight = Weight {
                nar_size: info.nar_size.unwrap_or(0),
                file_size: 0,
            };
            g.insert_weighted(info.path.clone(), info.references.iter().cloned(), weight);
        }
        g
    }

    /// Sets the references of `path` (replacing any it had: the last entry for a path wins),
    /// its sizes unknown (zero).
    pub fn insert(&mut self, path: StorePath, references: impl IntoIterator<Item = StorePath>) {
        self.insert_weighted(path, references, Weight::default());
    }

    /// Sets the references and sizes of `path` (the last entry for a path wins).
    pub fn insert_weighted(
        &mut self,
        path: StorePath,
        references: impl IntoIterator<Item = StorePath>,
        weight: Weight,
    ) {
        let id = self.intern(path);
        self.weights[id] = weight;
        let mut refs: Vec<usize> = references.into_iter().map(|r| self.intern(r)).collect();
        refs.sort_by(|a, b| self.paths[*a].cmp(&self.paths[*b]));
        refs.dedup();
        match self.references[id].take() {
            Some(old) => {
                for r in old {
                    self.referrers[r].retain(|x| *x != id);
                }
            }
            None => self.entries += 1,
        }
        for r in &refs {
            self.referrers[*r].push(id);
        }
        self.references[id] = Some(refs);
    }

    fn intern(&mut self, path: StorePath) -> usize {
        if let Some(id) = self.ids.get(&path) {
            return *id;
        }
        let id = self.paths.len();
        self.ids.insert(path.clone(), id);
        self.paths.push(path);
        self.references.push(None);
        self.referrers.push(Vec::new());
        self.weights.push(Weight::default());
        id
    }

    /// The number of paths with an entry.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether `path` has an entry.
    pub fn contains(&self, path: &StorePath) -> bool {
        self.entry(path).is_some()
    }

    fn entry(&self, path: &StorePath) -> Option<&[usize]> {
        let id = *self.ids.get(path)?;
        self.references[id].as_deref()
    }

    /// The references of `path`, sorted; `None` when it has no entry.
    pub fn references(&self, path: &StorePath) -> Option<Vec<&StorePath>> {
        Some(self.entry(path)?.iter().map(|r| &self.paths[*r]).collect())
    }

    /// The paths whose entries reference `path` (itself too, if it refers to itself), sorted.
    pub fn referrers(&self, path: &StorePath) -> Vec<&StorePath> {
        let Some(id) = self.ids.get(path) else {
            return Vec::new();
        };
        self.sorted(self.referrers[*id].iter().copied())
    }

    fn sorted(&self, ids: impl Iterator<Item = usize>) -> Vec<&StorePath> {
        let mut out: Vec<&StorePath> = ids.map(|i| &self.paths[i]).collect();
        out.sort();
        out
    }

    /// An order to delete `dead` in that never leaves a path without a reference it names
    /// while it exists: referrers first (among `dead`; self-references ignored), ties by path;
    /// paths in a cycle last, by path. Returns indices into `dead`.
    pub fn referrers_first(&self, dead: &[&StorePath]) -> Vec<usize> {
        let by_path: HashMap<&StorePath, usize> =
            dead.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        // The number of dead referrers of each dead path.
        let mut waiting: Vec<usize> = dead
            .iter()
            .map(|p| {
                self.referrers(p)
                    .into_iter()
                    .filter(|r| *r != *p && by_path.contains_key(r))
                    .count()
            })
            .collect();
        let mut ready: BTreeSet<(&StorePath, usize)> = dead
            .iter()
            .enumerate()
            .filter(|(i, _)| waiting[*i] == 0)
            .map(|(i, p)| (*p, i))
            .collect();
        let mut order = Vec::with_capacity(dead.len());
        let mut done = vec![false; dead.len()];
        while let Some((path, i)) = ready.pop_first() {
            done[i] = true;
            order.push(i);
            for r in self.references(path).unwrap_or_default() {
                if r == path {
                    continue;
                }
                if let Some(&j) = by_path.get(r) {
                    waiting[j] -= 1;
                    if waiting[j] == 0 {
                        ready.insert((dead[j], j));
                    }
                }
            }
        }
        let mut cycles: Vec<usize> = (0..dead.len()).filter(|i| !done[*i]).collect();
        cycles.sort_by(|a, b| dead[*a].cmp(dead[*b]));
        order.extend(cycles);
        order
    }

    /// The paths with an entry in the closure of `roots` (roots included), sorted; roots and
    /// references without an entry are left out.
    pub fn closure<'a>(
        &'a self,
        roots: impl IntoIterator<Item = &'a StorePath>,
    ) -> Vec<&'a StorePath> {
        self.closure_with_missing(roots).paths
    }

    /// The closure of `roots`, and the roots and references in it that have no entry.
    pub fn closure_with_missing<'a>(
        &'a self,
        roots: impl IntoIterator<Item = &'a StorePath>,
    ) -> Closure<'a> {
        let mut seen = vec![false; self.paths.len()];
        let mut todo = Vec::new();
        let mut out = Closure::default();
        for root in roots {
            match self.ids.get(root) {
                Some(id) => todo.push(*id),
                None => out.missing.push(root),
            }
        }
        while let Some(id) = todo.pop() {
            if std::mem::replace(&mut seen[id], true) {
                continue;
            }
            match &self.references[id] {
                Some(refs) => {
                    out.paths.push(&self.paths[id]);
                    todo.extend(refs.iter().filter(|r| !seen[**r]));
                }
                None => out.missing.push(&self.paths[id]),
            }
        }
        out.paths.sort();
        out.missing.sort();
        out.missing.dedup();
        out
    }

    /// The sizes of `path`'s entry; `None` when it has none.
    pub fn weight(&self, path: &StorePath) -> Option<Weight> {
        let id = *self.ids.get(path)?;
        self.references[id].as_ref().map(|_| self.weights[id])
    }

    /// What the closure of `roots` weighs: the sum over its paths with an entry.
    pub fn closure_weight<'a>(&'a self, roots: impl IntoIterator<Item = &'a StorePath>) -> Weight {
        let mut total = Weight::default();
        for p in self.closure(roots) {
            total += self.weights[self.ids[p]];
        }
        total
    }

    /// The node ids reachable from `root` through entries (root first, then in depth-first
    /// reverse postorder, references in path order), and each node's position in that order
    /// (`usize::MAX` for the others). Paths without an entry are left out.
    fn reverse_postorder(&self, root: usize) -> (Vec<usize>, Vec<usize>) {
        const NONE: usize = usize::MAX;
        let mut post = Vec::new();
        let mut position = vec![NONE; self.paths.len()];
        if self.references[root].is_some() {
            // (node, index of its next reference to look at); `position` marks the visited.
            let mut stack = vec![(root, 0usize)];
            position[root] = 0;
            while let Some(&(id, next)) = stack.last() {
                let refs = self.references[id].as_deref().unwrap_or_default();
                match refs.get(next) {
                    Some(&r) => {
                        if let Some(top) = stack.last_mut() {
                            top.1 += 1;
                        }
                        if self.references[r].is_some() && position[r] == NONE {
                            position[r] = 0;
                            stack.push((r, 0));
                        }
                    }
                    None => {
                        post.push(id);
                        stack.pop();
                    }
                }
            }
        }
        post.reverse();
        for (i, id) in post.iter().enumerate() {
            position[*id] = i;
        }
        (post, position)
    }

    /// The closure of `root` with what each path weighs and adds (see [`TreeNode`]), in
    /// depth-first reverse postorder from the root (so a path comes after its dominator).
    /// Paths without an entry are left out; empty when `root` has none. Dominators by Cooper,
    /// Harvey and Kennedy's iterative algorithm over that order.
    pub fn closure_tree(&self, root: &StorePath) -> Vec<TreeNode<'_>> {
        let Some(&root_id) = self.ids.get(root) else {
            return Vec::new();
        };
        let (order, position) = self.reverse_postorder(root_id);
        const NONE: usize = usize::MAX;
        // idom by position in `order`; the root is its own.
        let mut idom = vec![NONE; order.len()];
        if order.is_empty() {
            return Vec::new();
        }
        idom[0] = 0;
        let intersect = |idom: &[usize], mut a: usize, mut b: usize| {
            while a != b {
                while a > b {
                    a = idom[a];
                }
                while b > a {
                    b = idom[b];
                }
            }
            a
        };
        let mut changed = true;
        while changed {
            changed = false;
            for (i, id) in order.iter().enumerate().skip(1) {
                let mut new = NONE;
                for referrer in &self.referrers[*id] {
                    let p = position[*referrer];
                    // Outside the closure, itself, or not processed yet.
                    if p == NONE || p == i || idom[p] == NONE {
                        continue;
                    }
                    new = if new == NONE {
                        p
                    } else {
                        intersect(&idom, p, new)
                    };
                }
                if new != idom[i] {
                    idom[i] = new;
                    changed = true;
                }
            }
        }
        let mut added: Vec<Weight> = order.iter().map(|id| self.weights[*id]).collect();
        for i in (1..order.len()).rev() {
            let w = added[i];
            added[idom[i]] += w;
        }
        order
            .iter()
            .enumerate()
            .map(|(i, id)| TreeNode {
                path: &self.paths[*id],
                weight: self.weights[*id],
                added: added[i],
                dominator: (i > 0).then(|| &self.paths[order[idom[i]]]),
            })
            .collect()
    }

    /// Why `from` depends on `to`: the shortest chain of references from `from` to `to`, both
    /// included (`[from]` when they are the same path). Among chains of that length, the first
    /// in store path order, compared from `from`. `None` when `to` is not in `from`'s closure.
    pub fn why_depends(&self, from: &StorePath, to: &StorePath) -> Option<Vec<&StorePath>> {
        let start = *self.ids.get(from)?;
        let goal = *self.ids.get(to)?;
        // Breadth first, references in path order: the first time a node is reached is by the
        // first shortest chain, since each level is queued in the order of its chains.
        let mut parent: Vec<Option<usize>> = vec![None; self.paths.len()];
        let mut queue = VecDeque::from([start]);
        let mut reached = start == goal;
        while let (false, Some(id)) = (reached, queue.pop_front()) {
            for r in self.references[id].iter().flatten() {
                if *r == start || parent[*r].is_some() {
                    continue;
                }
                parent[*r] = Some(id);
                if *r == goal {
                    reached = true;
                    break;
                }
                queue.push_back(*r);
            }
        }
        if !reached {
            return None;
        }
        let mut chain = vec![&self.paths[goal]];
        let mut at = goal;
        while let Some(p) = parent[at] {
            chain.push(&self.paths[p]);
            at = p;
        }
        chain.reverse();
        Some(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Store path number `i` (paths sort by number).
    fn p(i: usize) -> StorePath {
        StorePath::from_base_name(&format!("{}{i:03}-p{i}", "0".repeat(29))).unwrap()
    }

    fn graph(edges: &[(usize, &[usize])]) -> Graph {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.insert(p(*from), to.iter().map(|t| p(*t)));
        }
        g
    }

    fn ps(ids: &[usize]) -> Vec<StorePath> {
        ids.iter().map(|i| p(*i)).collect()
    }

    fn owned(paths: Vec<&StorePath>) -> Vec<StorePath> {
        paths.into_iter().cloned().collect()
    }

    #[test]
    fn closure_sorted_roots_included_missing_skipped_or_reported() {
        // 1 → 2, 3; 2 → 4 (no entry); 3 → 3 (itself), 5; 6 unrelated.
        let g = graph(&[(3, &[3, 5]), (1, &[3, 2]), (2, &[4]), (5, &[]), (6, &[1])]);
        assert_eq!(g.len(), 5);
        assert!(g.contains(&p(1)) && !g.contains(&p(4)));
        let (r1, r4, r5, r9) = (p(1), p(4), p(5), p(9));
        assert_eq!(owned(g.closure([&r1])), ps(&[1, 2, 3, 5]));
        let c = g.closure_with_missing([&r1]);
        assert_eq!(owned(c.paths), ps(&[1, 2, 3, 5]));
        assert_eq!(owned(c.missing), ps(&[4]));
        // A root without an entry: missing (reported once), not in the closure.
        let c = g.closure_with_missing([&r9, &r4, &r5, &r9]);
        assert_eq!(owned(c.paths), ps(&[5]));
        assert_eq!(owned(c.missing), ps(&[4, 9]));
        assert!(g.closure([&r9]).is_empty());
        assert_eq!(owned(g.closure([&p(2), &p(5)])), ps(&[2, 5]));
    }

    #[test]
    fn referrers_are_direct_and_include_a_self_reference() {
        let g = graph(&[(3, &[3, 5]), (1, &[3, 2]), (2, &[4]), (5, &[]), (6, &[1])]);
        assert_eq!(owned(g.referrers(&p(3))), ps(&[1, 3]));
        assert_eq!(owned(g.referrers(&p(4))), ps(&[2]));
        assert_eq!(owned(g.referrers(&p(5))), ps(&[3]));
        assert!(g.referrers(&p(6)).is_empty());
        assert!(g.referrers(&p(9)).is_empty());
        assert_eq!(owned(g.references(&p(3)).unwrap()), ps(&[3, 5]));
        assert_eq!(g.references(&p(4)), None);
    }

    #[test]
    fn from_narinfos_and_path_infos() {
        let mut a = PathInfo::new(p(1));
        a.references = [p(1), p(2)].into();
        let b = PathInfo::new(p(2));
        let g = Graph::from_path_infos([&a, &b]);
        let r1 = p(1);
        assert_eq!(owned(g.closure([&r1])), ps(&[1, 2]));
        assert_eq!(owned(g.referrers(&p(1))), ps(&[1]));

        let text = |path: usize, refs: &str| {
            format!(
                "StorePath: /nix/store/{}\nURL: nar/x.nar\nCompression: none\n\
                 NarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n\
                 NarSize: 1\nReferences: {refs}\n",
                p(path)
            )
        };
        let infos = [
            NarInfo::parse(&text(1, &format!("{} {}", p(2), p(3)))).unwrap(),
            NarInfo::parse(&text(2, "")).unwrap(),
        ];
        let g = Graph::from_narinfos(&infos);
        let c = g.closure_with_missing([&r1]);
        assert_eq!((owned(c.paths), owned(c.missing)), (ps(&[1, 2]), ps(&[3])));
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one() {
        let mut g = graph(&[(1, &[2, 3]), (2, &[]), (3, &[])]);
        g.insert(p(1), [p(3), p(3)]);
        assert_eq!(g.len(), 3);
        assert_eq!(owned(g.references(&p(1)).unwrap()), ps(&[3]));
        assert!(g.referrers(&p(2)).is_empty());
        assert_eq!(owned(g.referrers(&p(3))), ps(&[1]));
        assert_eq!(owned(g.closure([&p(1)])), ps(&[1, 3]));
        // A path first seen as a reference gains an entry.
        g.insert(p(4), []);
        g.insert(p(3), [p(4)]);
        assert_eq!(g.len(), 4);
        assert_eq!(owned(g.closure([&p(1)])), ps(&[1, 3, 4]));
    }

    #[test]
    fn why_depends_gives_the_first_shortest_chain() {
        // 1 → 2 → 5 → 6 and 1 → 3 → 6 and 1 → 4 → 6: two chains of length 2, the one by 3 first.
        let g = graph(&[
            (1, &[4, 2, 3]),
            (2, &[5]),
            (3, &[6]),
            (4, &[6]),
            (5, &[6]),
            (6, &[6]),
        ]);
        assert_eq!(owned(g.why_depends(&p(1), &p(6)).unwrap()), ps(&[1, 3, 6]));
        assert_eq!(owned(g.why_depends(&p(2), &p(6)).unwrap()), ps(&[2, 5, 6]));
        assert_eq!(owned(g.why_depends(&p(1), &p(1)).unwrap()), ps(&[1]));
        assert_eq!(owned(g.why_depends(&p(6), &p(6)).unwrap()), ps(&[6]));
        assert_eq!(g.why_depends(&p(6), &p(1)), None);
        assert_eq!(g.why_depends(&p(9), &p(1)), None);
        assert_eq!(g.why_depends(&p(1), &p(9)), None);
        // To a reference without an entry.
        let g = graph(&[(1, &[2]), (2, &[7])]);
        assert_eq!(owned(g.why_depends(&p(1), &p(7)).unwrap()), ps(&[1, 2, 7]));
    }

    #[test]
    fn long_chains_need_no_recursion() {
        let n = 100_000;
        let mut g = Graph::new();
        for i in 0..n {
            g.insert(
                StorePath::from_base_name(&format!("{}{i:07}-x", "0".repeat(25))).unwrap(),
                [
                    StorePath::from_base_name(&format!("{}{:07}-x", "0".repeat(25), i + 1))
                        .unwrap(),
                ],
            );
        }
        let first = StorePath::from_base_name(&format!("{}{:07}-x", "0".repeat(25), 0)).unwrap();
        let last = StorePath::from_base_name(&format!("{}{:07}-x", "0".repeat(25), n)).unwrap();
        let c = g.closure_with_missing([&first]);
        assert_eq!((c.paths.len(), c.missing), (n, vec![&last]));
        assert_eq!(g.why_depends(&first, &last).unwrap().len(), n + 1);
    }

    /// A weight unique to path `i` (sums tell which paths were added).
    fn w(i: usize) -> Weight {
        Weight {
            nar_size: 1 << i,
            file_size: 1000 + i as u64,
        }
    }

    fn weighted(edges: &[(usize, &[usize])]) -> Graph {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.insert_weighted(p(*from), to.iter().map(|t| p(*t)), w(*from));
        }
        g
    }

    fn sum(ids: &[usize]) -> Weight {
        let mut total = Weight::default();
        for i in ids {
            total += w(*i);
        }
        total
    }

    #[test]
    fn weights_and_closure_weight() {
        // 1 → 2, 3; 2 → 4 (no entry); 3 → 3, 5.
        let g = weighted(&[(1, &[2, 3]), (2, &[4]), (3, &[3, 5]), (5, &[])]);
        assert_eq!(g.weight(&p(3)), Some(w(3)));
        assert_eq!(g.weight(&p(4)), None);
        assert_eq!(g.closure_weight([&p(1)]), sum(&[1, 2, 3, 5]));
        assert_eq!(g.closure_weight([&p(3), &p(2)]), sum(&[2, 3, 5]));
        assert_eq!(g.closure_weight([&p(9)]), Weight::default());
        // A later entry replaces the sizes too; insert() knows none.
        let mut g = g;
        g.insert(p(5), []);
        assert_eq!(g.weight(&p(5)), Some(Weight::default()));
    }

    /// (path, added, dominator) of each node of the closure tree.
    fn tree(g: &Graph, root: usize) -> Vec<(usize, Weight, Option<usize>)> {
        let id = |sp: &StorePath| (0..20).find(|i| p(*i) == *sp).unwrap();
        g.closure_tree(&p(root))
            .iter()
            .map(|n| {
                assert_eq!(Some(n.weight), g.weight(n.path));
                (id(n.path), n.added, n.dominator.map(id))
            })
            .collect()
    }

    #[test]
    fn closure_tree_added_sizes_are_what_only_a_path_brings_in() {
        // 1 → 2, 3; 2 → 4; 3 → 4, 5; 4 → 6; 5 → 5 (itself); 6 → 7 (no entry).
        // 4 is reached through 2 and through 3: its dominator is 1, and it adds 4 and 6.
        let g = weighted(&[
            (1, &[2, 3]),
            (2, &[4]),
            (3, &[5, 4]),
            (4, &[6]),
            (5, &[5]),
            (6, &[7]),
        ]);
        let t = tree(&g, 1);
        assert_eq!(t[0], (1, sum(&[1, 2, 3, 4, 5, 6]), None));
        let mut rest = t[1..].to_vec();
        rest.sort_by_key(|n| n.0);
        assert_eq!(
            rest,
            vec![
                (2, sum(&[2]), Some(1)),
                (3, sum(&[3, 5]), Some(1)),
                (4, sum(&[4, 6]), Some(1)),
                (5, sum(&[5]), Some(3)),
                (6, sum(&[6]), Some(4)),
            ]
        );
        // Every path after its dominator.
        for (i, (_, _, d)) in t.iter().enumerate().skip(1) {
            assert!(t[..i].iter().any(|n| Some(n.0) == *d));
        }
        // From another root, a chain: each path adds the rest of it.
        let t = tree(&g, 3);
        assert_eq!(t[0], (3, sum(&[3, 4, 5, 6]), None));
        assert!(t.contains(&(4, sum(&[4, 6]), Some(3))));
        assert!(t.contains(&(6, sum(&[6]), Some(4))));
        // No entry: nothing.
        assert!(g.closure_tree(&p(7)).is_empty());
        assert!(g.closure_tree(&p(9)).is_empty());
    }

    #[test]
    fn closure_tree_of_a_cycle_and_a_long_chain() {
        // A hostile cache may have cycles: 1 → 2 → 3 → 1, and 3 → 4.
        let g = weighted(&[(1, &[2]), (2, &[3]), (3, &[1, 4]), (4, &[])]);
        let t = tree(&g, 1);
        assert_eq!(
            t,
            vec![
                (1, sum(&[1, 2, 3, 4]), None),
                (2, sum(&[2, 3, 4]), Some(1)),
                (3, sum(&[3, 4]), Some(2)),
                (4, sum(&[4]), Some(3)),
            ]
        );
        let n = 100_000;
        let mut g = Graph::new();
        let sp =
            |i: usize| StorePath::from_base_name(&format!("{}{i:07}-x", "0".repeat(25))).unwrap();
        let one = Weight {
            nar_size: 1,
            file_size: 1,
        };
        for i in 0..n {
            g.insert_weighted(sp(i), [sp(i + 1)], one);
        }
        let t = g.closure_tree(&sp(0));
        assert_eq!(t.len(), n);
        assert_eq!(t[0].added.nar_size, n as u64);
        assert_eq!(t[n - 1].added.nar_size, 1);
        assert_eq!(t[n - 1].dominator, Some(&sp(n - 2)));
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const NODES: usize = 7;

        /// Up to NODES paths, each with an entry or not, with references among all NODES.
        fn arb_graph() -> impl Strategy<Value = Vec<(usize, Vec<usize>)>> {
            proptest::collection::btree_map(
                0..NODES,
                proptest::collection::vec(0..NODES, 0..4),
                0..=NODES,
            )
            .prop_map(|m| m.into_iter().collect())
        }

        fn build(edges: &[(usize, Vec<usize>)]) -> Graph {
            let mut g = Graph::new();
            for (from, to) in edges {
                g.insert(p(*from), to.iter().map(|t| p(*t)));
            }
            g
        }

        fn refs_of(edges: &[(usize, Vec<usize>)], from: usize) -> Option<&Vec<usize>> {
            edges.iter().find(|(f, _)| *f == from).map(|(_, to)| to)
        }

        /// Every chain without repeated paths from `from` to `to`, by exhaustive search.
        fn all_chains(edges: &[(usize, Vec<usize>)], from: usize, to: usize) -> Vec<Vec<usize>> {
            let mut out = Vec::new();
            let mut todo = vec![vec![from]];
            while let Some(chain) = todo.pop() {
                let last = *chain.last().unwrap();
                if last == to {
                    out.push(chain);
                    continue;
                }
                for r in refs_of(edges, last).into_iter().flatten() {
                    if !chain.contains(r) {
                        let mut longer = chain.clone();
                        longer.push(*r);
                        todo.push(longer);
                    }
                }
            }
            out
        }

        proptest! {
            #[test]
            fn closure_is_closed_and_minimal(edges in arb_graph(), roots in proptest::collection::vec(0..NODES, 0..3)) {
                let g = build(&edges);
                let roots: Vec<StorePath> = roots.iter().map(|r| p(*r)).collect();
                let c = g.closure_with_missing(roots.iter());
                prop_assert!(c.paths.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(c.missing.windows(2).all(|w| w[0] < w[1]));
                // Closed: every reference of a path in it is in it, or missing.
                for path in &c.paths {
                    for r in g.references(path).unwrap() {
                        prop_assert!(c.paths.contains(&r) || c.missing.contains(&r));
                    }
                }
                // Roots included; nothing without an entry among the paths, nothing else missing.
                for r in &roots {
                    prop_assert_eq!(g.contains(r), c.paths.contains(&r));
                    prop_assert_eq!(!g.contains(r), c.missing.contains(&r));
                }
                for m in &c.missing {
                    prop_assert!(!g.contains(m));
                }
                // Minimal: each path is a root or referenced by one in the closure.
                for path in c.paths.iter().chain(&c.missing) {
                    prop_assert!(roots.contains(path) || g.referrers(path).iter().any(|x| c.paths.contains(x)));
                }
                prop_assert_eq!(g.closure(roots.iter()), c.paths);
            }

            #[test]
            fn added_size_is_what_removing_the_path_removes(edges in arb_graph(), root in 0..NODES) {
                let mut g = Graph::new();
                for (from, to) in &edges {
                    g.insert_weighted(p(*from), to.iter().map(|t| p(*t)), w(*from));
                }
                let tree = g.closure_tree(&p(root));
                let root_path = p(root);
                prop_assert_eq!(tree.len(), g.closure([&root_path]).len());
                // What is reachable from the root through entries, never entering `avoid`.
                let reach = |avoid: Option<usize>| -> Vec<usize> {
                    let mut seen = vec![root];
                    let mut todo = vec![root];
                    if avoid == Some(root) || refs_of(&edges, root).is_none() {
                        return Vec::new();
                    }
                    while let Some(x) = todo.pop() {
                        for r in refs_of(&edges, x).into_iter().flatten() {
                            if Some(*r) != avoid && refs_of(&edges, *r).is_some() && !seen.contains(r) {
                                seen.push(*r);
                                todo.push(*r);
                            }
                        }
                    }
                    seen
                };
                let total = sum(&reach(None));
                for (i, node) in tree.iter().enumerate() {
                    let v = (0..NODES).find(|x| p(*x) == *node.path).unwrap();
                    let kept = sum(&reach(Some(v)));
                    prop_assert_eq!(node.added.nar_size, total.nar_size - kept.nar_size);
                    prop_assert_eq!(node.added.file_size, total.file_size - kept.file_size);
                    // The dominator comes first, and removing it removes the path.
                    match node.dominator {
                        None => prop_assert_eq!(i, 0),
                        Some(d) => {
                            let j = tree.iter().position(|n| n.path == d).unwrap();
                            prop_assert!(j < i);
                            let dv = (0..NODES).find(|x| p(*x) == *d).unwrap();
                            prop_assert!(!reach(Some(dv)).contains(&v));
                        }
                    }
                }
            }

            #[test]
            fn why_depends_is_a_first_shortest_chain(edges in arb_graph(), from in 0..NODES, to in 0..NODES) {
                let g = build(&edges);
                let mut chains = all_chains(&edges, from, to);
                let got = g.why_depends(&p(from), &p(to));
                let known = refs_of(&edges, from).is_some() || edges.iter().any(|(_, t)| t.contains(&from));
                if !known || chains.is_empty() {
                    prop_assert_eq!(got, None);
                    return Ok(());
                }
                let got = got.unwrap();
                // Valid: starts at from, ends at to, each step a reference.
                prop_assert_eq!(got[0], &p(from));
                prop_assert_eq!(*got.last().unwrap(), &p(to));
                for w in got.windows(2) {
                    prop_assert!(g.references(w[0]).unwrap().contains(&w[1]));
                }
                // The shortest, and the first of the shortest in path order.
                let shortest = chains.iter().map(Vec::len).min().unwrap();
                chains.retain(|c| c.len() == shortest);
                chains.sort();
                prop_assert_eq!(owned(got), ps(&chains[0]));
            }
        }
    }
}
