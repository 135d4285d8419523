//! The `DerivationOutputs` rows of a `.drv` path being registered, as Nix 2.8's `addValidPath`
//! makes them: the derivation read from the store (its input derivations too, for
//! `checkDerivationOutputs`), refused as Nix refuses it when malformed or when an output path is
//! not the one it implies, and one row (output name, output path) per output with a path.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::derivation::{check_outputs, Derivation, DerivationError, Modulo};
use crate::store_path::{StoreDir, StorePath};

/// The largest `.drv` read (nixpkgs' largest are a few MiB).
pub const MAX_DRV_BYTES: u64 = 64 << 20;

/// Reads and parses the derivation `path` from the store directory `real_store`: a regular
/// file, not followed through a symlink, at most [`MAX_DRV_BYTES`].
pub fn read_drv(
    real_store: &std::path::Path,
    store_dir: &StoreDir,
    path: &StorePath,
) -> Result<Derivation, DerivationError> {
    let file: PathBuf = real_store.join(path.base_name());
    let fail = |what: String| DerivationError::Invalid(format!("{}: {what}", file.display()));
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&file)
        .map_err(|e| fail(format!("opening: {e}")))?;
    let meta = f.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_DRV_BYTES {
        return Err(fail(format!("larger than {MAX_DRV_BYTES} bytes")));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_DRV_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| fail(format!("reading: {e}")))?;
    if text.len() as u64 > MAX_DRV_BYTES {
        return Err(fail(format!("larger than {MAX_DRV_BYTES} bytes")));
    }
    Derivation::read(&text, path, store_dir).map_err(|e| fail(e.to_string()))
}

/// A derivation's rows: output name, output path.
pub type OutputRows = Vec<(String, StorePath)>;

/// Derivations checked and their rows computed against one store, input derivations read once.
pub struct DrvRows<'a> {
    store_dir: &'a StoreDir,
    real_store: &'a std::path::Path,
}

impl<'a> DrvRows<'a> {
    pub fn new(store_dir: &'a StoreDir, real_store: &'a std::path::Path) -> DrvRows<'a> {
        DrvRows {
            store_dir,
            real_store,
        }
    }

    /// The rows of each derivation of `paths` (others are skipped), checked as Nix checks them.
    pub fn rows(&self, paths: &[StorePath]) -> Result<Vec<(StorePath, OutputRows)>, String> {
        let (store_dir, real_store) = (self.store_dir, self.real_store);
        let mut load = |p: &StorePath| read_drv(real_store, store_dir, p);
        let mut modulo = Modulo::new(store_dir, &mut load);
        let mut out = Vec::new();
        for p in paths.iter().filter(|p| p.name().ends_with(".drv")) {
            let shown = store_dir.display(p);
            let drv = read_drv(real_store, store_dir, p).map_err(|e| e.to_string())?;
            check_outputs(p, &drv, &mut modulo).map_err(|e| format!("{shown}: {e}"))?;
            let rows = drv
                .output_paths(store_dir)
                .map_err(|e| format!("{shown}: {e}"))?;
            out.push((p.clone(), rows));
        }
        Ok(out)
    }
}
