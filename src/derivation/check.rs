//! Nix 2.8's `hashDerivationModulo` and `checkDerivationOutputs`: the hash an input-addressed
//! output path is made from (the derivation's text with each input derivation replaced by its
//! own such hash, and, for its own outputs, the output paths masked), and the check that every
//! output path in a derivation is the one it implies.

use std::collections::{BTreeMap, BTreeSet};

use super::{make_output_path, method_algo, unparse, Derivation, DerivationError, Kind, Output};
use crate::hash::{to_hex, Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath};

/// How deep input derivations may nest before a chain is refused (nixpkgs nests a few hundred).
const MAX_DEPTH: usize = 4096;

/// A derivation's hash modulo, per output (Nix's `DrvHash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrvHash {
    pub hashes: BTreeMap<String, Hash>,
    /// Depends on a floating or impure derivation.
    pub deferred: bool,
}

/// Hashes modulo of input derivations, remembered; `load` reads a derivation from the store.
pub struct Modulo<'a> {
    store_dir: &'a StoreDir,
    load: &'a mut dyn FnMut(&StorePath) -> Result<Derivation, DerivationError>,
    known: BTreeMap<StorePath, DrvHash>,
}

impl<'a> Modulo<'a> {
    pub fn new(
        store_dir: &'a StoreDir,
        load: &'a mut dyn FnMut(&StorePath) -> Result<Derivation, DerivationError>,
    ) -> Modulo<'a> {
        Modulo {
            store_dir,
            load,
            known: BTreeMap::new(),
        }
    }

    fn of_path(&mut self, path: &StorePath, depth: usize) -> Result<DrvHash, DerivationError> {
        if let Some(h) = self.known.get(path) {
            return Ok(h.clone());
        }
        if depth > MAX_DEPTH {
            return Err(DerivationError::Invalid(format!(
                "input derivations nest deeper than {MAX_DEPTH} at {path}"
            )));
        }
        let drv = (self.load)(path)?;
        let h = self.of(&drv, false, depth + 1)?;
        self.known.insert(path.clone(), h.clone());
        Ok(h)
    }

    fn of(
        &mut self,
        drv: &Derivation,
        mask_outputs: bool,
        depth: usize,
    ) -> Result<DrvHash, DerivationError> {
        let kind = drv.kind()?;
        let each = |h: &Hash| -> BTreeMap<String, Hash> {
            drv.outputs.keys().map(|k| (k.clone(), h.clone())).collect()
        };
        match kind {
            Kind::Fixed => {
                let mut hashes = BTreeMap::new();
                for (id, o) in &drv.outputs {
                    let Output::Fixed(m, h) = o else { continue };
                    let path = drv.fixed_output_path(self.store_dir, id, *m, h)?;
                    let text = format!(
                        "fixed:out:{}:{}:{}",
                        method_algo(*m, h.algo()),
                        to_hex(h.digest()),
                        self.store_dir.display(&path)
                    );
                    hashes.insert(id.clone(), Hash::of(HashAlgo::Sha256, text.as_bytes()));
                }
                return Ok(DrvHash {
                    hashes,
                    deferred: false,
                });
            }
            Kind::Impure => {
                return Ok(DrvHash {
                    hashes: each(&Hash::of(HashAlgo::Sha256, b"impure")),
                    deferred: true,
                })
            }
            _ => {}
        }
        let mut deferred = kind == Kind::Floating;
        let mut inputs: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for (path, wanted) in &drv.input_drvs {
            let res = self.of_path(path, depth)?;
            deferred |= res.deferred;
            for name in wanted {
                let h = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| res.hashes.get(n))
                    .ok_or_else(|| {
                        DerivationError::Invalid(format!(
                            "the input derivation {path} has no output {:?}",
                            String::from_utf8_lossy(name)
                        ))
                    })?;
                inputs
                    .entry(to_hex(h.digest()))
                    .or_default()
                    .insert(name.clone());
            }
        }
        let text = unparse(drv, self.store_dir, mask_outputs, Some(&inputs))?;
        Ok(DrvHash {
            hashes: each(&Hash::of(HashAlgo::Sha256, &text)),
            deferred,
        })
    }
}

/// Nix's `hashDerivationModulo`.
pub fn hash_modulo(
    drv: &Derivation,
    mask_outputs: bool,
    modulo: &mut Modulo<'_>,
) -> Result<DrvHash, DerivationError> {
    modulo.of(drv, mask_outputs, 0)
}

/// Nix's `checkDerivationOutputs`: every input-addressed output's path is the one made from
/// the hash modulo, and every output with a path has it in the environment variable of its
/// name.
pub fn check_outputs(
    drv_path: &StorePath,
    drv: &Derivation,
    modulo: &mut Modulo<'_>,
) -> Result<(), DerivationError> {
    let store_dir = modulo.store_dir;
    drv.kind()?;
    let env_has = |actual: &StorePath, var: &str| -> Result<(), DerivationError> {
        let ok = drv
            .env
            .get(var.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| store_dir.parse_path(v).ok())
            .is_some_and(|p| &p == actual);
        if ok {
            Ok(())
        } else {
            Err(DerivationError::Invalid(format!(
                "derivation '{}' has incorrect environment variable '{var}', should be '{}'",
                store_dir.display(drv_path),
                store_dir.display(actual)
            )))
        }
    };
    let mut modulo_hash = None;
    for (id, o) in &drv.outputs {
        match o {
            Output::InputAddressed(path) => {
                if modulo_hash.is_none() {
                    modulo_hash = Some(hash_modulo(drv, true, modulo)?);
                }
                let h = modulo_hash
                    .as_ref()
                    .and_then(|m| m.hashes.get(id))
                    .ok_or_else(|| DerivationError::Invalid(format!("no hash for output {id}")))?;
                let expected = make_output_path(store_dir, id, h, &drv.name)?;
                if path != &expected {
                    return Err(DerivationError::Invalid(format!(
                        "derivation '{}' has incorrect output '{}', should be '{}'",
                        store_dir.display(drv_path),
                        store_dir.display(path),
                        store_dir.display(&expected)
                    )));
                }
                env_has(path, id)?;
            }
            Output::Fixed(m, h) => env_has(&drv.fixed_output_path(store_dir, id, *m, h)?, id)?,
            Output::Floating(..) | Output::Deferred | Output::Impure(..) => {}
        }
    }
    Ok(())
}
