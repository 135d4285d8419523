//! `nar-tool demo`: a sample store, a signed cache built from it, and its verification, all
//! in-process with no Nix.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use nar_tool::cache::verify::report::Rendering;
use nar_tool::cache::verify::VerifyOptions;
use nar_tool::compression::Compression;
use nar_tool::host::build::{build_cache, BuildOptions, MetadataSource};
use nar_tool::host::demo::lay_out_sample_store;
use nar_tool::store_path::StoreDir;

use super::build_cache::DEFAULT_PRIORITY;
use super::{key, verify};
use crate::util::jobs_or_cores;

/// Show the whole job with no Nix needed: lay out a sample store in DIR, build a signed cache
/// from it and verify the cache
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Working directory (must not exist)
    #[arg(default_value = "nar-tool-demo")]
    dir: PathBuf,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    if dir.exists() {
        bail!("{} exists; give the demo a new directory", dir.display());
    }
    let store =
        lay_out_sample_store(&dir.join("store-root")).context("laying out the sample store")?;
    println!(
        "1. laid out a sample store at {}/nix/store:",
        store.root.display()
    );
    for p in &store.paths {
        println!("     /nix/store/{p}");
    }

    let (secret, public) = (dir.join("cache-key.secret"), dir.join("cache-key.public"));
    let key = key::generate("demo-cache-1", &secret, &public, false)?;
    println!("2. generated a signing key: {}", key.public_key());

    let cache = dir.join("cache");
    let top = store.paths.last().expect("the sample has paths").clone();
    let top_text = format!("/nix/store/{top}");
    println!("3. nar-tool build-cache --to {} --store-root {} --registration {} --sign {} --nar-listing {top_text}", cache.display(), store.root.display(), store.registration.display(), secret.display());
    let trusted = key.public_key();
    let opts = BuildOptions {
        to: cache.clone(),
        store_root: store.root.clone(),
        store_dir: StoreDir::default(),
        metadata: MetadataSource::Registration(store.registration.clone()),
        compression: Compression::Zstd,
        level: None,
        jobs: jobs_or_cores(None),
        keys: vec![key],
        nar_listing: true,
        closure: true,
        force: false,
        priority: DEFAULT_PRIORITY,
        want_mass_query: true,
        xz_memory: nar_tool::host::build::DEFAULT_XZ_MEMORY,
        interrupt: None,
        policy: Default::default(),
        index: true,
        paths: vec![top],
    };
    build_cache(&opts, |_| {}).context("build-cache failed")?;

    println!(
        "4. nar-tool verify {} --trusted-key-file {}",
        cache.display(),
        public.display()
    );
    let opts = VerifyOptions {
        trusted_keys: vec![trusted],
        ..VerifyOptions::default()
    };
    let shown = cache.to_string_lossy();
    let none = nar_tool::host::upstream::Upstreams::none(&opts.store_dir);
    let report = verify::verify_cache(&shown, &opts, &none, jobs_or_cores(None), false)?;
    verify::print_report(&shown, &report, Rendering::Text)?;
    println!("\nUse it with Nix: nix copy --from file://{} --option trusted-public-keys \"$(cat {})\" {top_text}", cache.canonicalize()?.display(), public.display());
    Ok(ExitCode::from(report.exit_code()))
}
