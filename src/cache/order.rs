//! The order in which narinfos are published: a path's narinfo only after those of all its
//! references, so a reader never sees a narinfo whose closure is incomplete, whatever order
//! the (parallel) NAR work finishes in.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::store_path::StorePath;

#[derive(Default)]
pub struct PublishOrder {
    published: HashSet<StorePath>,
    /// Paths whose NAR is done, with the references still unpublished.
    waiting: HashMap<StorePath, BTreeSet<StorePath>>,
    /// For each unpublished path, who waits for it.
    dependents: HashMap<StorePath, Vec<StorePath>>,
}

impl PublishOrder {
    /// `already` are paths whose narinfos exist (in the cache before this run).
    pub fn new(already: impl IntoIterator<Item = StorePath>) -> Self {
        PublishOrder {
            published: already.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Records that `path` is ready apart from its references, and returns every path that may
    /// now be published, in a valid order (possibly `path` itself and paths that waited for it).
    pub fn ready(&mut self, path: StorePath, references: &BTreeSet<StorePath>) -> Vec<StorePath> {
        let missing: BTreeSet<StorePath> = references
            .iter()
            .filter(|r| **r != path && !self.published.contains(*r))
            .cloned()
            .collect();
        if !missing.is_empty() {
            for m in &missing {
                self.dependents
                    .entry(m.clone())
                    .or_default()
                    .push(path.clone());
            }
            self.waiting.insert(path, missing);
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut queue = vec![path];
        while let Some(p) = queue.pop() {
            self.published.insert(p.clone());
            for d in self.dependents.remove(&p).unwrap_or_default() {
                if let Some(missing) = self.waiting.get_mut(&d) {
                    missing.remove(&p);
                    if missing.is_empty() {
                        self.waiting.remove(&d);
                        queue.push(d);
                    }
                }
            }
            out.push(p);
        }
        out
    }

    pub fn is_published(&self, path: &StorePath) -> bool {
        self.published.contains(path)
    }

    /// Paths still waiting, with what they wait for.
    pub fn stuck(&self) -> impl Iterator<Item = (&StorePath, &BTreeSet<StorePath>)> {
        self.waiting.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(c: char) -> StorePath {
        StorePath::from_base_name(&format!(
            "{}-{c}",
            c.to_string().repeat(32).replace(|_: char| false, "")
        ))
        .unwrap()
    }

    #[test]
    fn publishes_references_first() {
        let (a, b, c) = (p('a'), p('b'), p('c'));
        let mut order = PublishOrder::new([]);
        // c -> b -> a; c finishes first, then a, then b.
        assert!(order
            .ready(c.clone(), &[b.clone(), c.clone()].into())
            .is_empty());
        assert_eq!(order.ready(a.clone(), &BTreeSet::new()), vec![a.clone()]);
        assert_eq!(
            order.ready(b.clone(), &[a.clone()].into()),
            vec![b.clone(), c.clone()]
        );
        assert_eq!(order.stuck().count(), 0);
    }
}
