//! Reference policies: Nix's `allowedReferences`, `allowedRequisites`, `disallowedReferences`
//! and `disallowedRequisites`, checked for store paths against a reference [`Graph`] — what
//! Nix checks of a derivation's outputs after a build (`checkOutputs`), checked here of paths
//! before they are published, or of a cache already built.
//!
//! The semantics are Nix's for derivations without structured attributes:
//! - a path's *references* are its entry's references, a self-reference included: a path that
//!   refers to itself fails `allowedReferences` unless it is listed, and fails
//!   `disallowedReferences` when it is;
//! - its *requisites* are its closure (every path reachable through references), without the
//!   path itself (Nix drops it whether or not it refers to itself);
//! - a list given but empty allows nothing; a list not given checks nothing.
//!
//! Nix stops at the first list that fails; here every list is checked, and every offending path
//! of each is listed in store path order (Nix's message), with the shortest chain of references
//! from the checked path to it (as `nix why-depends`).

use std::collections::BTreeSet;
use std::fmt;

use crate::cache::graph::Graph;
use crate::store_path::{StoreDir, StorePath};

/// One of the four lists, in the order Nix checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Constraint {
    AllowedReferences,
    AllowedRequisites,
    DisallowedReferences,
    DisallowedRequisites,
}

impl Constraint {
    /// Every constraint, in the order Nix checks them.
    pub const ALL: [Constraint; 4] = [
        Constraint::AllowedReferences,
        Constraint::AllowedRequisites,
        Constraint::DisallowedReferences,
        Constraint::DisallowedRequisites,
    ];

    /// The derivation attribute that declares it (`allowedReferences`, …).
    pub fn attribute(self) -> &'static str {
        match self {
            Constraint::AllowedReferences => "allowedReferences",
            Constraint::AllowedRequisites => "allowedRequisites",
            Constraint::DisallowedReferences => "disallowedReferences",
            Constraint::DisallowedRequisites => "disallowedRequisites",
        }
    }

    /// Whether the list names what is allowed (else what is not).
    pub fn allows(self) -> bool {
        matches!(
            self,
            Constraint::AllowedReferences | Constraint::AllowedRequisites
        )
    }

    /// How an offending path stands to the list: `not in allowedReferences`, `in
    /// disallowedRequisites`, …
    pub fn breach(self) -> String {
        let relation = if self.allows() { "not in" } else { "in" };
        format!("{relation} {}", self.attribute())
    }

    /// Whether it applies to the closure (requisites) rather than the direct references.
    pub fn recursive(self) -> bool {
        matches!(
            self,
            Constraint::AllowedRequisites | Constraint::DisallowedRequisites
        )
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

/// The four optional lists of store paths. `None`: not checked; `Some` of an empty set: for an
/// `allowed` list, nothing is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferencePolicy {
    pub allowed_references: Option<BTreeSet<StorePath>>,
    pub allowed_requisites: Option<BTreeSet<StorePath>>,
    pub disallowed_references: Option<BTreeSet<StorePath>>,
    pub disallowed_requisites: Option<BTreeSet<StorePath>>,
}

/// A path a policy was asked to check has no entry in the graph: its references are unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: not known, so its references cannot be checked")]
pub struct NotInGraph(pub StorePath);

/// A path that breaks one list: every offending path, as Nix lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The path checked (Nix's "output").
    pub path: StorePath,
    pub constraint: Constraint,
    /// In store path order (Nix's), never empty.
    pub offenders: Vec<Offender>,
}

/// A path the checked path may not refer to (or have in its closure), and how it gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offender {
    pub path: StorePath,
    /// The shortest chain of references from the checked path to this one, both included
    /// (`[p, p]` for a self-reference).
    pub chain: Vec<StorePath>,
}

impl ReferencePolicy {
    /// The list of `constraint`, if given.
    pub fn list(&self, constraint: Constraint) -> Option<&BTreeSet<StorePath>> {
        match constraint {
            Constraint::AllowedReferences => self.allowed_references.as_ref(),
            Constraint::AllowedRequisites => self.allowed_requisites.as_ref(),
            Constraint::DisallowedReferences => self.disallowed_references.as_ref(),
            Constraint::DisallowedRequisites => self.disallowed_requisites.as_ref(),
        }
    }

    /// Sets the list of `constraint`.
    pub fn set(&mut self, constraint: Constraint, list: Option<BTreeSet<StorePath>>) {
        let slot = match constraint {
            Constraint::AllowedReferences => &mut self.allowed_references,
            Constraint::AllowedRequisites => &mut self.allowed_requisites,
            Constraint::DisallowedReferences => &mut self.disallowed_references,
            Constraint::DisallowedRequisites => &mut self.disallowed_requisites,
        };
        *slot = list;
    }

    /// Whether no list is given (nothing to check).
    pub fn is_empty(&self) -> bool {
        Constraint::ALL.iter().all(|c| self.list(*c).is_none())
    }

    /// Checks `path`: its violations, one per list it breaks, in Nix's order of the lists.
    pub fn check(&self, graph: &Graph, path: &StorePath) -> Result<Vec<Violation>, NotInGraph> {
        let references: BTreeSet<&StorePath> = graph
            .references(path)
            .ok_or_else(|| NotInGraph(path.clone()))?
            .into_iter()
            .collect();
        let mut requisites: Option<BTreeSet<&StorePath>> = None;
        let mut out = Vec::new();
        for constraint in Constraint::ALL {
            let Some(list) = self.list(constraint) else {
                continue;
            };
            let used: &BTreeSet<&StorePath> = if constraint.recursive() {
                requisites.get_or_insert_with(|| {
                    let closure = graph.closure_with_missing([path]);
                    let mut all: BTreeSet<&StorePath> =
                        closure.paths.into_iter().chain(closure.missing).collect();
                    // As Nix for derivations without structured attributes: the path itself is
                    // not one of its requisites, even when it refers to itself.
                    all.remove(path);
                    all
                })
            } else {
                &references
            };
            let offenders: Vec<Offender> = used
                .iter()
                .filter(|u| list.contains(**u) != constraint.allows())
                .map(|u| Offender {
                    path: (*u).clone(),
                    chain: chain(graph, path, u),
                })
                .collect();
            if !offenders.is_empty() {
                out.push(Violation {
                    path: path.clone(),
                    constraint,
                    offenders,
                });
            }
        }
        Ok(out)
    }

    /// Checks each of `paths` (in the order given; a path given twice is checked once).
    pub fn check_all<'a>(
        &self,
        graph: &Graph,
        paths: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<Vec<Violation>, NotInGraph> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for p in paths {
            if seen.insert(p) {
                out.extend(self.check(graph, p)?);
            }
        }
        Ok(out)
    }
}

/// The chain of references from `from` to `to`, one of its references or requisites.
fn chain(graph: &Graph, from: &StorePath, to: &StorePath) -> Vec<StorePath> {
    if from == to {
        return vec![from.clone(), to.clone()];
    }
    graph
        .why_depends(from, to)
        .map(|c| c.into_iter().cloned().collect())
        .unwrap_or_else(|| vec![from.clone(), to.clone()])
}

impl Violation {
    /// Nix's message, word for word: `output '…' is not allowed to refer to the following
    /// paths:` and each offending path on a line of its own, indented by two spaces.
    pub fn nix_message(&self, store_dir: &StoreDir) -> String {
        let mut out = format!(
            "output '{}' is not allowed to refer to the following paths:",
            store_dir.display(&self.path)
        );
        for o in &self.offenders {
            out.push_str("\n  ");
            out.push_str(&store_dir.display(&o.path));
        }
        out
    }

    /// Nix's message, then which list it breaks and the chain of references to each offender.
    pub fn render(&self, store_dir: &StoreDir) -> String {
        let mut out = self.nix_message(store_dir);
        out.push_str(&format!(
            "\n{}; the chains of references:",
            self.constraint.breach()
        ));
        for o in &self.offenders {
            out.push_str("\n  ");
            out.push_str(&render_chain(store_dir, &o.chain));
        }
        out
    }
}

/// A chain of references: full store paths joined by ` → `.
pub fn render_chain(store_dir: &StoreDir, chain: &[StorePath]) -> String {
    chain
        .iter()
        .map(|p| store_dir.display(p))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Every violation rendered, separated by blank lines.
pub fn render_all(violations: &[Violation], store_dir: &StoreDir) -> String {
    violations
        .iter()
        .map(|v| v.render(store_dir))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests;
