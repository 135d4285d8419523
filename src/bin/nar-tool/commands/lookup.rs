//! `nar-tool lookup`: hash parts to store paths through a store's DB, as Nix's
//! `queryPathFromHashPart` does (one indexed query each; the store directory is not read).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use nar_tool::host::db::NixDb;
use nar_tool::host::store::StoreRoot;
use nar_tool::nixbase32;
use nar_tool::store_path::StoreDir;

use crate::args::UsageError;

/// Print the valid store path of each hash part (or store path) from the DB of the store under
/// ROOT; exit 1 if one is not valid there
#[derive(clap::Args)]
pub struct LookupArgs {
    /// The store's root (its DB is ROOT/nix/var/nix/db/db.sqlite)
    #[arg(long, value_name = "ROOT")]
    store_root: PathBuf,
    /// The logical store directory
    #[arg(long, value_name = "DIR", default_value = "/nix/store")]
    store_dir: String,
    /// 32-character hash parts, or store paths (or their base names)
    #[arg(value_name = "HASH-PART|STORE-PATH", required = true)]
    keys: Vec<String>,
}

pub fn run(args: LookupArgs) -> Result<ExitCode> {
    let store_dir = StoreDir::new(&args.store_dir)?;
    let mut hash_parts = Vec::new();
    for k in &args.keys {
        let base = k
            .strip_prefix(store_dir.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(k);
        let hash = base.get(..32).unwrap_or(base);
        let ok = hash.len() == 32
            && hash.bytes().all(|b| nixbase32::ALPHABET.contains(&b))
            && (base.len() == 32 || base.as_bytes().get(32) == Some(&b'-'));
        if !ok {
            return Err(UsageError(format!(
                "{k:?}: not a hash part (32 nix-base32 characters) or a store path in {}",
                store_dir.as_str()
            ))
            .into());
        }
        hash_parts.push((k, hash.to_string()));
    }
    let root = StoreRoot::new(&args.store_root, store_dir.clone());
    let db = NixDb::open_live(&root.db_file(), &store_dir)?;
    let mut missing = 0;
    for (k, hash) in hash_parts {
        match db.path_from_hash_part(&hash)? {
            Some(p) => println!("{}", store_dir.display(&p)),
            None => {
                eprintln!("nar-tool: {k}: no valid path with hash part {hash}");
                missing += 1;
            }
        }
    }
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
