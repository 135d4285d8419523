//! The reference policy flags of `build-cache` and `verify` (`nar_tool::cache::policy`).

use std::collections::BTreeSet;

use anyhow::Result;

use nar_tool::cache::policy::{Constraint, ReferencePolicy};
use nar_tool::store_path::StorePath;

use crate::args::UsageError;

/// Reference policies, as Nix's derivation attributes of the same names (without structured
/// attributes).
#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// Only these store paths may be references (allowedReferences; a self-reference is a
    /// reference). Each policy flag is repeatable and takes store paths separated by commas or
    /// spaces; an empty value ('') is an empty list, which allows nothing
    #[arg(long, value_name = "PATHS", help_heading = "Reference policy")]
    allowed_references: Option<Vec<String>>,
    /// Only these store paths may be in the closure, the path itself left out (allowedRequisites)
    #[arg(long, value_name = "PATHS", help_heading = "Reference policy")]
    allowed_requisites: Option<Vec<String>>,
    /// These store paths may not be references (disallowedReferences)
    #[arg(long, value_name = "PATHS", help_heading = "Reference policy")]
    disallowed_references: Option<Vec<String>>,
    /// These store paths may not be in the closure, the path itself left out (disallowedRequisites)
    #[arg(long, value_name = "PATHS", help_heading = "Reference policy")]
    disallowed_requisites: Option<Vec<String>>,
}

impl PolicyArgs {
    /// The policy given (empty when no flag is), each path read by `resolve`.
    pub fn policy(&self, resolve: impl Fn(&str) -> Result<StorePath>) -> Result<ReferencePolicy> {
        let mut policy = ReferencePolicy::default();
        for (constraint, values) in [
            (Constraint::AllowedReferences, &self.allowed_references),
            (Constraint::AllowedRequisites, &self.allowed_requisites),
            (
                Constraint::DisallowedReferences,
                &self.disallowed_references,
            ),
            (
                Constraint::DisallowedRequisites,
                &self.disallowed_requisites,
            ),
        ] {
            let Some(values) = values else { continue };
            let mut list = BTreeSet::new();
            for item in values
                .iter()
                .flat_map(|v| v.split(|c: char| c == ',' || c.is_whitespace()))
                .filter(|i| !i.is_empty())
            {
                let path = resolve(item)
                    .map_err(|e| UsageError(format!("{} {item:?}: {e:#}", flag(constraint))))?;
                list.insert(path);
            }
            policy.set(constraint, Some(list));
        }
        Ok(policy)
    }
}

/// The flag of a constraint.
fn flag(constraint: Constraint) -> &'static str {
    match constraint {
        Constraint::AllowedReferences => "--allowed-references",
        Constraint::AllowedRequisites => "--allowed-requisites",
        Constraint::DisallowedReferences => "--disallowed-references",
        Constraint::DisallowedRequisites => "--disallowed-requisites",
    }
}
