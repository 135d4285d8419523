//! Derivations (`.drv` files) as Nix 2.8 reads them, for what a store needs when it registers
//! one: its outputs and their paths (the `DerivationOutputs` rows of Nix's DB), and Nix's
//! check that those paths are the ones the derivation implies (`checkDerivationOutputs`,
//! through `hashDerivationModulo`), so that a derivation Nix would refuse is refused too.
//!
//! Pure: the text comes in as bytes, input derivations through a callback.

mod aterm;
mod check;

use std::collections::{BTreeMap, BTreeSet};

pub use aterm::{parse, unparse};
pub use check::{check_outputs, hash_modulo, DrvHash, Modulo};

use crate::hash::{Hash, HashAlgo};
use crate::store_path::{
    make_fixed_output_path, make_store_path, FileIngestion, StoreDir, StorePath,
};

/// Why a derivation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerivationError {
    #[error("malformed derivation at byte {at}: {message}")]
    Syntax { at: usize, message: String },
    #[error("invalid derivation: {0}")]
    Invalid(String),
}

/// One output, as Nix 2.8's `DerivationOutput`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Its path is in the text.
    InputAddressed(StorePath),
    /// Fixed-output: the path follows from the hash.
    Fixed(FileIngestion, Hash),
    /// Content-addressed, path known only once built (`ca-derivations`).
    Floating(FileIngestion, HashAlgo),
    /// Input-addressed, path not yet computed.
    Deferred,
    /// `impure-derivations`.
    Impure(FileIngestion, HashAlgo),
}

/// A parsed derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// The store path's name without `.drv`.
    pub name: String,
    pub outputs: BTreeMap<String, Output>,
    pub input_drvs: BTreeMap<StorePath, BTreeSet<Vec<u8>>>,
    pub input_srcs: BTreeSet<StorePath>,
    pub platform: Vec<u8>,
    pub builder: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub env: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The name a derivation's output path has: the derivation's name, `-<output>` unless `out`.
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_string()
    } else {
        format!("{drv_name}-{output}")
    }
}

/// `r:sha256` / `sha256`.
fn method_algo(method: FileIngestion, algo: HashAlgo) -> String {
    match method {
        FileIngestion::Recursive => format!("r:{algo}"),
        FileIngestion::Flat => algo.to_string(),
    }
}

fn invalid(e: impl std::fmt::Display) -> DerivationError {
    DerivationError::Invalid(e.to_string())
}

/// Nix's `makeOutputPath`: `output:<name>` over a derivation hash.
pub fn make_output_path(
    store_dir: &StoreDir,
    output: &str,
    hash: &Hash,
    drv_name: &str,
) -> Result<StorePath, DerivationError> {
    make_store_path(
        &format!("output:{output}"),
        hash,
        store_dir,
        &output_path_name(drv_name, output),
    )
    .map_err(invalid)
}

/// The kinds of derivation Nix 2.8's `BasicDerivation::type` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InputAddressed,
    Fixed,
    Floating,
    Deferred,
    Impure,
}

impl Derivation {
    /// Reads the text of the derivation stored as `path` (`….drv`).
    pub fn read(
        text: &[u8],
        path: &StorePath,
        store_dir: &StoreDir,
    ) -> Result<Derivation, DerivationError> {
        let name = path.name().strip_suffix(".drv").ok_or_else(|| {
            DerivationError::Invalid(format!("{path} is not named like a derivation"))
        })?;
        parse(text, name, store_dir)
    }

    /// The path of a fixed output (`makeFixedOutputPath` of the output's path name).
    pub fn fixed_output_path(
        &self,
        store_dir: &StoreDir,
        output: &str,
        method: FileIngestion,
        hash: &Hash,
    ) -> Result<StorePath, DerivationError> {
        let name = output_path_name(&self.name, output);
        make_fixed_output_path(store_dir, &name, method, hash).map_err(invalid)
    }

    /// Each output with a known path, and that path (Nix's `outputsAndOptPaths`, the outputs
    /// without a path left out): the `DerivationOutputs` rows Nix registers.
    pub fn output_paths(
        &self,
        store_dir: &StoreDir,
    ) -> Result<Vec<(String, StorePath)>, DerivationError> {
        let mut out = Vec::new();
        for (id, o) in &self.outputs {
            match o {
                Output::InputAddressed(p) => out.push((id.clone(), p.clone())),
                Output::Fixed(m, h) => {
                    out.push((id.clone(), self.fixed_output_path(store_dir, id, *m, h)?))
                }
                Output::Floating(..) | Output::Deferred | Output::Impure(..) => {}
            }
        }
        Ok(out)
    }

    /// Nix's `type()`: one kind of output only, a fixed output alone and named `out`.
    pub fn kind(&self) -> Result<Kind, DerivationError> {
        let mut kinds = BTreeSet::new();
        for o in self.outputs.values() {
            kinds.insert(match o {
                Output::InputAddressed(_) => 0,
                Output::Fixed(..) => 1,
                Output::Floating(..) => 2,
                Output::Deferred => 3,
                Output::Impure(..) => 4,
            });
        }
        let kind = match kinds.len() {
            0 => return Err(invalid("a derivation must have at least one output")),
            1 => kinds.into_iter().next().unwrap_or(0),
            _ => return Err(invalid("a derivation can't mix output types")),
        };
        Ok(match kind {
            0 => Kind::InputAddressed,
            1 => {
                if self.outputs.len() > 1 {
                    return Err(invalid("only one fixed output is allowed"));
                }
                if !self.outputs.contains_key("out") {
                    return Err(invalid("a single fixed output must be named \"out\""));
                }
                Kind::Fixed
            }
            2 => Kind::Floating,
            3 => Kind::Deferred,
            _ => Kind::Impure,
        })
    }
}

#[cfg(test)]
mod tests;
