//! The command line: parses flags, calls the library, maps errors to exit codes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use nar_tool::compression::Compression;
use nar_tool::hash::{Encoding, Hash, HashAlgo, Hasher};
use nar_tool::host::atomic::write_atomic;
use nar_tool::host::build::{BuildOptions, MetadataSource, Progress};
use nar_tool::host::fs::{dump_path, restore_path, CaseHack};
use nar_tool::nar::listing::{self, Found, Listing, ListingNode};
use nar_tool::nar::NarReader;
use nar_tool::narinfo::NarInfo;
use nar_tool::signing::{PublicKey, SecretKey};
use nar_tool::store_path::{make_source_path, StoreDir, StorePath};

#[derive(Parser)]
#[command(name = "nar-tool", version, about = "Build, serve, inspect and verify Nix binary caches, byte-for-byte with Nix.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the NAR of PATH to stdout (what `nix-store --dump PATH` writes)
    Dump {
        path: PathBuf,
        /// Strip `~nix~case~hack~N` suffixes from names, as Nix's use-case-hack does
        #[arg(long)]
        case_hack: bool,
    },
    /// Unpack a NAR from stdin into DEST, which must not exist (all or nothing)
    Restore {
        dest: PathBuf,
        /// Rename names that collide case-insensitively to NAME~nix~case~hack~N, as Nix does
        #[arg(long)]
        case_hack: bool,
    },
    /// Print the hash of each PATH's NAR (or, with --flat, of its contents), like `nix-hash`
    Hash(HashArgs),
    /// List the files in a NAR (file or `-` for stdin), like `nix nar ls`
    Ls {
        /// NAR file, or `-` for stdin
        nar: String,
        /// Path inside the archive to list
        #[arg(default_value = "/")]
        path: String,
        /// Print the `.ls` JSON document (with narOffset) instead
        #[arg(long)]
        json: bool,
        /// List directories recursively
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Show type, size and target
        #[arg(short = 'l', long)]
        long: bool,
    },
    /// Print one file from inside a NAR
    Cat {
        /// NAR file, or `-` for stdin
        nar: String,
        /// Path of a regular file inside the archive, e.g. /bin/hello
        path: String,
    },
    /// Print the store path `nix-store --add PATH` would create, without Nix
    StorePath {
        path: PathBuf,
        /// Name of the store path (default: PATH's file name)
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
    },
    /// Manage binary-cache signing keys
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Sign narinfo files in place (adds a `Sig:` line; the file is replaced atomically)
    Sign {
        /// Secret key file (as `nix-store --generate-binary-cache-key` writes)
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(required = true)]
        narinfos: Vec<PathBuf>,
    },
    /// Build (or complete) a flat-file binary cache from store paths and their closure
    BuildCache(BuildCacheArgs),
    /// Verify a binary cache: every hash, size, signature, reference, URL and file.
    /// Exit status: 0 all good (orphan NARs are only warnings), else the sum of 1 (corrupt or
    /// missing), 2 (untrusted or bad signatures), 4 (a check could not run)
    Verify(VerifyArgs),
    /// Show the whole job with no Nix needed: lay out a sample store in DIR, build a signed cache
    /// from it and verify the cache
    Demo {
        /// Working directory (must not exist)
        #[arg(default_value = "nar-tool-demo")]
        dir: PathBuf,
    },
    /// Serve a cache directory over HTTP (a substituter for Nix; the inspector at /); Ctrl-C stops
    Serve {
        /// The cache directory
        cache: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Worker threads of the HTTP server (tokio runtime)
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Directory of the inspector's static files [default: www/ beside the executable's repository, if present]
        #[arg(long)]
        inspector: Option<PathBuf>,
        /// Directory of the wasm build, served at /wasm/ for the inspector [default: pkg/wasm beside the inspector's www/, if present]
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// Do not log requests
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Check narinfo files
    Narinfo {
        #[command(subcommand)]
        command: NarinfoCommand,
    },
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("metadata").multiple(false))]
struct BuildCacheArgs {
    /// The cache directory (created if missing; an existing cache is completed)
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Physical root of the store: /nix/store/x is read at ROOT/nix/store/x (like local?root=)
    #[arg(long, value_name = "ROOT", default_value = "/")]
    store_root: PathBuf,
    /// The logical store directory
    #[arg(long, default_value = "/nix/store")]
    store_dir: String,
    /// Nix SQLite DB to read metadata from, read-only and lock-free [default: ROOT/nix/var/nix/db/db.sqlite]
    #[arg(long, value_name = "FILE", group = "metadata")]
    db: Option<PathBuf>,
    /// closureInfo `registration` file (the `nix-store --dump-db` format)
    #[arg(long, value_name = "FILE", group = "metadata")]
    registration: Option<PathBuf>,
    /// `nix path-info --json` output
    #[arg(long, value_name = "FILE", group = "metadata")]
    path_info: Option<PathBuf>,
    /// Find references by scanning each NAR for the hash parts of the store paths present
    #[arg(long, group = "metadata")]
    scan_references: bool,
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    compression: CompressionArg,
    /// Compression level: xz 0-9, zstd 1-22, bzip2 1-9 [default: zstd 3 and bzip2 9, as Nix; xz
    /// preset 6 with a 16 MiB dictionary and a shorter match search: ~22 % less CPU than Nix's
    /// preset 6 for about the same size]
    #[arg(long)]
    level: Option<u32>,
    /// Paths compressed at once [default: the number of cores]
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Sign every narinfo with this secret key file (repeatable)
    #[arg(long = "sign", value_name = "SECRET-KEY-FILE")]
    sign: Vec<PathBuf>,
    /// Also write <hashpart>.ls file listings
    #[arg(long)]
    nar_listing: bool,
    /// Only the given paths, not their closure
    #[arg(long)]
    no_closure: bool,
    /// Rewrite paths whose narinfo already exists
    #[arg(long)]
    force: bool,
    /// `Priority:` in nix-cache-info (lower wins; cache.nixos.org has 40)
    #[arg(long, default_value_t = 30)]
    priority: i64,
    /// Read more store paths, one per line, from FILE (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    paths_from: Option<String>,
    /// No progress bar or summary
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Store paths (/nix/store/…-name, a path below one, or a base name)
    store_paths: Vec<String>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The cache directory
    cache: PathBuf,
    /// A trusted public key `name:base64` (repeatable); every path then needs a valid signature by one
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// A file holding trusted public keys, one per line or space-separated (repeatable)
    #[arg(long = "trusted-key-file", value_name = "FILE")]
    trusted_key_files: Vec<PathBuf>,
    /// Do not read NARs: check narinfos, presence and sizes of files, signatures, references only
    #[arg(long)]
    no_contents: bool,
    /// Paths checked at once [default: the number of cores]
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// The store directory the cache must be for
    #[arg(long, default_value = "/nix/store")]
    store_dir: String,
    /// Print the report as one JSON document
    #[arg(long)]
    json: bool,
    /// No progress bar
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Xz,
    Zstd,
    Bzip2,
    None,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Bzip2 => Compression::Bzip2,
            CompressionArg::None => Compression::None,
        }
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a key pair NAME (convention: `host-1`)
    Generate {
        name: String,
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        public: PathBuf,
        /// Overwrite existing files
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a secret key file
    Public { secret: PathBuf },
}

#[derive(Subcommand)]
enum NarinfoCommand {
    /// Parse each narinfo and, with trusted keys, check its signatures; exit 1 on any problem
    Check {
        #[arg(required = true)]
        narinfos: Vec<PathBuf>,
        /// A trusted public key `name:base64` (repeatable); each narinfo needs a valid signature by one
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct HashArgs {
    #[command(subcommand)]
    convert: Option<HashCommand>,
    /// Hash algorithm (default sha256; nix-hash's default is md5, so pass --type to compare)
    #[arg(long = "type", value_enum, default_value_t = AlgoArg::Sha256)]
    algo: AlgoArg,
    #[command(flatten)]
    format: FormatArgs,
    /// Hash the file's contents instead of its NAR
    #[arg(long)]
    flat: bool,
    paths: Vec<PathBuf>,
}

#[derive(Args)]
#[group(multiple = false)]
struct FormatArgs {
    /// Print base16 (hex), the default
    #[arg(long)]
    base16: bool,
    /// Print nixbase32
    #[arg(long)]
    base32: bool,
    /// Print base64
    #[arg(long)]
    base64: bool,
    /// Print an SRI hash (sha256-…)
    #[arg(long)]
    sri: bool,
}

impl FormatArgs {
    fn encoding(&self) -> Encoding {
        if self.base32 {
            Encoding::Nixbase32
        } else if self.base64 {
            Encoding::Base64
        } else if self.sri {
            Encoding::Sri
        } else {
            Encoding::Base16
        }
    }
}

#[derive(Subcommand)]
enum HashCommand {
    /// Convert hashes between base16, nixbase32, base64 and SRI
    Convert {
        /// Algorithm of hashes given without a prefix
        #[arg(long = "type", value_enum)]
        algo: Option<AlgoArg>,
        #[command(flatten)]
        format: FormatArgs,
        /// Print with the `algo:` prefix
        #[arg(long)]
        prefix: bool,
        #[arg(required = true)]
        hashes: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgoArg {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgoArg> for HashAlgo {
    fn from(a: AlgoArg) -> HashAlgo {
        match a {
            AlgoArg::Md5 => HashAlgo::Md5,
            AlgoArg::Sha1 => HashAlgo::Sha1,
            AlgoArg::Sha256 => HashAlgo::Sha256,
            AlgoArg::Sha512 => HashAlgo::Sha512,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("nar-tool: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Dump { path, case_hack } => {
            let out = BufWriter::with_capacity(256 * 1024, io::stdout().lock());
            let mut out = dump_path(&path, out, CaseHack(case_hack))?;
            out.flush()?;
        }
        Command::Restore { dest, case_hack } => {
            restore_path(io::stdin().lock(), &dest, CaseHack(case_hack))
                .with_context(|| format!("restoring into {}", dest.display()))?;
        }
        Command::Hash(args) => return hash(args),
        Command::Ls {
            nar,
            path,
            json,
            recursive,
            long,
        } => {
            let listing =
                Listing::from_nar(open_nar(&nar)?).with_context(|| format!("reading {nar}"))?;
            if json {
                println!("{}", listing.to_json());
            } else {
                let node = listing
                    .root
                    .get(&path)
                    .ok_or_else(|| anyhow!("{nar}: no file {path:?} in the archive"))?;
                let mut out = BufWriter::new(io::stdout().lock());
                print_listing(&mut out, node, &path, recursive, long, true)?;
                out.flush()?;
            }
        }
        Command::Cat { nar, path } => {
            let mut reader = NarReader::new(open_nar(&nar)?);
            match listing::find(&mut reader, &path).with_context(|| format!("reading {nar}"))? {
                Ok(Found::Regular { .. }) => {
                    let mut out = BufWriter::new(io::stdout().lock());
                    io::copy(&mut reader.contents(), &mut out)
                        .with_context(|| format!("reading {nar}"))?;
                    out.flush()?;
                }
                Ok(Found::Symlink { target }) => bail!(
                    "{nar}: {path:?} is a symlink to {:?}, not a regular file",
                    String::from_utf8_lossy(&target)
                ),
                Ok(Found::Directory) => bail!("{nar}: {path:?} is a directory, not a regular file"),
                Err(msg) => bail!("{nar}: {msg}"),
            }
        }
        Command::StorePath {
            path,
            name,
            store_dir,
        } => {
            let store_dir = StoreDir::new(&store_dir)?;
            let name = match name {
                Some(n) => n,
                None => lexical_file_name(&path)
                    .ok_or_else(|| anyhow!("{} has no file name; pass --name", path.display()))?,
            };
            let (hash, _) = nar_hash(&path, HashAlgo::Sha256)?;
            println!(
                "{}",
                store_dir.display(&make_source_path(&store_dir, &name, &hash, &[], false)?)
            );
        }
        Command::Key { command } => match command {
            KeyCommand::Generate {
                name,
                secret,
                public,
                force,
            } => {
                if name.is_empty() || name.contains(':') {
                    bail!("key name {name:?} must be non-empty and contain no ':'");
                }
                for f in [&secret, &public] {
                    if !force && f.exists() {
                        bail!("{} exists; pass --force to overwrite", f.display());
                    }
                }
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed)
                    .map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
                let key = SecretKey::from_seed(&name, &seed);
                write_atomic(&secret, key.to_text().as_bytes(), 0o600)
                    .with_context(|| format!("writing {}", secret.display()))?;
                write_atomic(&public, key.public_key().to_string().as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", public.display()))?;
            }
            KeyCommand::Public { secret } => println!("{}", read_secret_key(&secret)?.public_key()),
        },
        Command::Sign { keys, narinfos } => {
            let keys = keys
                .iter()
                .map(|k| read_secret_key(k))
                .collect::<Result<Vec<_>>>()?;
            for path in &narinfos {
                let mut info = read_narinfo(path)?;
                for key in &keys {
                    info.sign(key)
                        .with_context(|| format!("{}", path.display()))?;
                }
                write_atomic(path, info.to_text().as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::BuildCache(args) => return build_cache(args),
        Command::Verify(args) => return verify(args),
        Command::Demo { dir } => return demo(&dir),
        Command::Serve {
            cache,
            listen,
            threads,
            inspector,
            wasm,
            quiet,
        } => {
            let inspector = inspector.or_else(default_inspector);
            let wasm = wasm.or_else(|| {
                let dir = inspector.as_ref()?.join("../pkg/wasm");
                dir.is_dir().then_some(dir)
            });
            let opts = nar_tool::host::serve::ServeOptions {
                root: cache.clone(),
                listen,
                threads,
                inspector,
                wasm,
                log: !quiet,
            };
            let served = nar_tool::host::serve::Served::bind(&opts)?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed))
                .context("installing the Ctrl-C handler")?;
            eprintln!(
                "serving {} on http://{} (Ctrl-C stops)",
                cache.display(),
                served.address()
            );
            served.run(stop).context("serving")?;
            eprintln!("stopped");
        }
        Command::Narinfo {
            command:
                NarinfoCommand::Check {
                    narinfos,
                    trusted_keys,
                },
        } => {
            let trusted = trusted_keys
                .iter()
                .map(|k| PublicKey::parse(k))
                .collect::<Result<Vec<_>, _>>()?;
            let mut failed = 0;
            for path in &narinfos {
                match check_narinfo(path, &trusted) {
                    Ok(msg) => println!("ok   {}: {msg}", path.display()),
                    Err(e) => {
                        failed += 1;
                        println!("FAIL {}: {e:#}", path.display());
                    }
                }
            }
            if failed > 0 {
                eprintln!("{failed} of {} narinfos failed", narinfos.len());
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hash(args: HashArgs) -> Result<ExitCode> {
    if let Some(HashCommand::Convert {
        algo,
        format,
        prefix,
        hashes,
    }) = args.convert
    {
        for h in hashes {
            let parsed = match algo {
                Some(a) => Hash::parse_as(a.into(), &h),
                None => Hash::parse_any(&h),
            }
            .with_context(|| format!("cannot convert {h:?}"))?;
            let e = format.encoding();
            println!(
                "{}",
                if prefix {
                    parsed.to_prefixed(e)
                } else {
                    parsed.encode(e)
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.paths.is_empty() {
        bail!("no PATH given (see `nar-tool hash --help`)");
    }
    let algo: HashAlgo = args.algo.into();
    for path in &args.paths {
        let h = if args.flat {
            let mut hasher = Hasher::new(algo);
            io::copy(
                &mut File::open(path).with_context(|| format!("{}", path.display()))?,
                &mut hasher,
            )
            .with_context(|| format!("reading {}", path.display()))?;
            hasher.finish()
        } else {
            nar_hash(path, algo)?.0
        };
        println!("{}", h.encode(args.format.encoding()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The hash and size of a path's NAR.
fn nar_hash(path: &Path, algo: HashAlgo) -> Result<(Hash, u64)> {
    let sink = nar_tool::hash::HashingWriter::new(algo, io::sink());
    let (h, n, _) = dump_path(path, sink, CaseHack(false))?.finish();
    Ok((h, n))
}

fn open_nar(name: &str) -> Result<Box<dyn Read>> {
    let inner: Box<dyn Read> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(name).with_context(|| name.to_string())?)
    };
    Ok(Box::new(BufReader::with_capacity(256 * 1024, inner)))
}

fn read_secret_key(path: &Path) -> Result<SecretKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading secret key {}", path.display()))?;
    SecretKey::parse(&text).with_context(|| format!("secret key file {}", path.display()))
}

fn read_narinfo(path: &Path) -> Result<NarInfo> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NarInfo::parse(&text).with_context(|| format!("{}", path.display()))
}

fn check_narinfo(path: &Path, trusted: &[PublicKey]) -> Result<String> {
    let info = read_narinfo(path)?;
    let expected = format!("{}.narinfo", info.store_path.hash_part());
    if path.file_name().is_some_and(|n| {
        n.to_string_lossy().ends_with(".narinfo") && n.to_string_lossy() != expected
    }) {
        bail!(
            "file name does not match StorePath {} (expected {expected})",
            info.path()
        );
    }
    if trusted.is_empty() {
        return Ok(format!(
            "{} (signatures not checked: no --trusted-key)",
            info.path()
        ));
    }
    let check = info.check_signatures(trusted)?;
    if !check.invalid.is_empty() {
        bail!(
            "{}: signature by {} does not verify (changed after signing?)",
            info.path(),
            check.invalid.join(", ")
        );
    }
    if check.valid.is_empty() {
        bail!("{}: no valid signature by a trusted key", info.path());
    }
    Ok(format!(
        "{} (signed by {})",
        info.path(),
        check.valid.join(", ")
    ))
}

fn print_listing(
    out: &mut impl Write,
    node: &ListingNode,
    path: &str,
    recursive: bool,
    long: bool,
    top: bool,
) -> Result<()> {
    // An explicit stack keeps deep archives from exhausting ours.
    let mut stack = vec![(node, path.trim_end_matches('/').to_string(), top)];
    while let Some((node, rel, top)) = stack.pop() {
        let shown = if rel.is_empty() {
            ".".to_string()
        } else {
            rel.clone()
        };
        match node {
            ListingNode::Directory { entries } if top || recursive => {
                if !top {
                    print_entry(out, node, &shown, long)?;
                }
                for (name, child) in entries.iter().rev() {
                    stack.push((child, format!("{rel}/{name}"), false));
                }
            }
            _ => print_entry(out, node, &shown, long)?,
        }
    }
    Ok(())
}

fn print_entry(out: &mut impl Write, node: &ListingNode, path: &str, long: bool) -> Result<()> {
    if !long {
        writeln!(out, "{path}")?;
        return Ok(());
    }
    match node {
        ListingNode::Regular {
            size, executable, ..
        } => writeln!(
            out,
            "{} {size:>20} {path}",
            if *executable {
                "-r-xr-xr-x"
            } else {
                "-r--r--r--"
            }
        )?,
        ListingNode::Directory { .. } => writeln!(out, "dr-xr-xr-x {:>20} {path}", 0)?,
        ListingNode::Symlink { target } => {
            writeln!(out, "lrwxrwxrwx {:>20} {path} -> {target}", 0)?
        }
    }
    Ok(())
}

fn build_cache(args: BuildCacheArgs) -> Result<ExitCode> {
    let store_dir = StoreDir::new(&args.store_dir)?;
    let mut names = args.store_paths.clone();
    if let Some(from) = &args.paths_from {
        let text = if from == "-" {
            io::read_to_string(io::stdin().lock())?
        } else {
            fs::read_to_string(from).with_context(|| format!("reading {from}"))?
        };
        names.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if names.is_empty() {
        bail!("no store paths given (as arguments or with --paths-from)");
    }
    let physical_store = args
        .store_root
        .join(store_dir.as_str().trim_start_matches('/'));
    let paths = names
        .iter()
        .map(|n| parse_store_path_arg(n, &store_dir, &physical_store))
        .collect::<Result<Vec<_>>>()?;
    let metadata = if let Some(db) = args.db {
        MetadataSource::Db(db)
    } else if let Some(r) = args.registration {
        MetadataSource::Registration(r)
    } else if let Some(p) = args.path_info {
        MetadataSource::PathInfoJson(p)
    } else if args.scan_references {
        MetadataSource::Scan
    } else {
        MetadataSource::Db(args.store_root.join("nix/var/nix/db/db.sqlite"))
    };
    let keys = args
        .sign
        .iter()
        .map(|k| read_secret_key(k))
        .collect::<Result<Vec<_>>>()?;
    if let Some(level) = args.level {
        nar_tool::host::codec::check_level(args.compression.into(), level)
            .map_err(|e| anyhow!(e))?;
    }
    let jobs = jobs_or_cores(args.jobs);
    let opts = BuildOptions {
        to: args.to.clone(),
        store_root: args.store_root,
        store_dir,
        metadata,
        compression: args.compression.into(),
        level: args.level,
        jobs,
        keys,
        nar_listing: args.nar_listing,
        closure: !args.no_closure,
        force: args.force,
        priority: args.priority,
        want_mass_query: true,
        paths,
    };
    let mut bar = BuildProgress::new(!args.quiet && !args.json);
    let summary = nar_tool::host::build::build_cache(&opts, |p| bar.update(p));
    bar.finish();
    let summary = summary.with_context(|| {
        format!(
            "building cache {} (what was published so far is valid; run again to complete it)",
            args.to.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        eprintln!(
            "{}: {} paths ({} written, {} already there, {} NARs deduplicated), {} of NAR into {} of {} files, in {:.2}s",
            args.to.display(),
            summary.paths,
            summary.written,
            summary.skipped,
            summary.deduplicated,
            human_bytes(summary.nar_bytes),
            human_bytes(summary.file_bytes),
            Compression::from(args.compression),
            summary.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A store path from the command line: absolute (possibly below a store path, or under the
/// physical store), or a base name.
fn parse_store_path_arg(
    arg: &str,
    store_dir: &StoreDir,
    physical_store: &Path,
) -> Result<StorePath> {
    if let Ok((p, _)) = store_dir.parse_path_prefix(arg) {
        return Ok(p);
    }
    if let Ok(rest) = Path::new(arg).strip_prefix(physical_store) {
        if let Some(first) = rest.components().next() {
            return Ok(StorePath::from_base_name(
                &first.as_os_str().to_string_lossy(),
            )?);
        }
    }
    if !arg.contains('/') {
        if let Ok(p) = StorePath::from_base_name(arg) {
            return Ok(p);
        }
    }
    bail!("{arg:?} is not a path in the store directory {store_dir}")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    use nar_tool::cache::verify::{self as v, VerifyOptions};
    use rayon::prelude::*;

    let mut keys = Vec::new();
    for k in &args.trusted_keys {
        keys.push(PublicKey::parse(k).with_context(|| format!("--trusted-key {k:?}"))?);
    }
    for f in &args.trusted_key_files {
        let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for k in text.split_whitespace() {
            keys.push(PublicKey::parse(k).with_context(|| format!("{}", f.display()))?);
        }
    }
    let opts = VerifyOptions {
        trusted_keys: keys,
        check_contents: !args.no_contents,
        store_dir: StoreDir::new(&args.store_dir)?,
    };
    let storage = nar_tool::host::dir_storage::DirStorage::open(&args.cache)
        .with_context(|| format!("opening cache {}", args.cache.display()))?;
    let jobs = jobs_or_cores(args.jobs);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;

    let info_problems = v::check_cache_info(&storage, &opts);
    let (names, mut problems) = v::list(&storage);
    let bar = progress_bar(
        !args.quiet && !args.json,
        names.len() as u64,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} paths (ETA {eta})",
    );
    let checks: Vec<v::PathCheck> = pool.install(|| {
        names
            .par_iter()
            .map(|n| {
                let c = v::check_path(&storage, n, &opts, nar_tool::host::storage::native_decoder);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
                c
            })
            .collect()
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let nar_files = v::judge_nar_files(
        nar_tool::cache::verify::CacheStorage::list_nar_files(&storage),
        &mut problems,
    );
    problems.extend(v::cross_check(&checks, &nar_files));
    let report = v::report(info_problems, checks, problems);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = BufWriter::new(io::stdout().lock());
        for p in &report.problems {
            writeln!(out, "{} {}: {}", p.kind, p.path, p.message)?;
        }
        let failures = report
            .problems
            .iter()
            .filter(|p| !p.kind.is_warning())
            .count();
        let warnings = report.problems.len() - failures;
        writeln!(
            out,
            "{}: {} paths, {} read, {}: {failures} problems, {warnings} warnings",
            args.cache.display(),
            report.paths,
            human_bytes(report.checked_bytes),
            if report.ok { "OK" } else { "FAILED" }
        )?;
        out.flush()?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn demo(dir: &Path) -> Result<ExitCode> {
    if dir.exists() {
        bail!("{} exists; give the demo a new directory", dir.display());
    }
    let store = nar_tool::host::demo::lay_out_sample_store(&dir.join("store-root"))
        .context("laying out the sample store")?;
    println!(
        "1. laid out a sample store at {}/nix/store:",
        store.root.display()
    );
    for p in &store.paths {
        println!("     /nix/store/{p}");
    }
    let (secret, public) = (dir.join("cache-key.secret"), dir.join("cache-key.public"));
    let me = std::env::current_exe()?;
    let run = |args: &[&std::ffi::OsStr]| -> Result<i32> {
        let status = std::process::Command::new(&me).args(args).status()?;
        Ok(status.code().unwrap_or(1))
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    run(&[
        os("key").as_ref(),
        os("generate").as_ref(),
        os("demo-cache-1").as_ref(),
        os("--secret").as_ref(),
        secret.as_os_str(),
        os("--public").as_ref(),
        public.as_os_str(),
    ])?;
    println!(
        "2. generated a signing key: {}",
        fs::read_to_string(&public)?.trim()
    );
    let cache = dir.join("cache");
    let top = format!(
        "/nix/store/{}",
        store.paths.last().expect("the sample has paths")
    );
    println!("3. nar-tool build-cache --to {} --store-root {} --registration {} --sign {} --nar-listing {top}", cache.display(), store.root.display(), store.registration.display(), secret.display());
    let code = run(&[
        os("build-cache").as_ref(),
        os("--quiet").as_ref(),
        os("--to").as_ref(),
        cache.as_os_str(),
        os("--store-root").as_ref(),
        store.root.as_os_str(),
        os("--registration").as_ref(),
        store.registration.as_os_str(),
        os("--sign").as_ref(),
        secret.as_os_str(),
        os("--nar-listing").as_ref(),
        os(&top).as_ref(),
    ])?;
    if code != 0 {
        bail!("build-cache failed");
    }
    println!(
        "4. nar-tool verify {} --trusted-key-file {}",
        cache.display(),
        public.display()
    );
    let code = run(&[
        os("verify").as_ref(),
        os("--quiet").as_ref(),
        cache.as_os_str(),
        os("--trusted-key-file").as_ref(),
        public.as_os_str(),
    ])?;
    println!("\nUse it with Nix: nix copy --from file://{} --option trusted-public-keys \"$(cat {})\" {top}", cache.canonicalize()?.display(), public.display());
    Ok(ExitCode::from(code as u8))
}

/// `--jobs`, or the number of cores.
fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

/// The progress bar of `build-cache` (on a TTY only): in NAR bytes, with rate and ETA, when the
/// metadata gives every path's size up front; in paths when scanning.
struct BuildProgress {
    bar: Option<indicatif::ProgressBar>,
    in_bytes: bool,
    paths: u64,
    paths_done: u64,
    nar_bytes_done: u64,
    /// Whether the rate estimate was restarted after the paths already in the cache, which
    /// come at once and would make the rate and ETA far too optimistic.
    eta_restarted: bool,
}

impl BuildProgress {
    const BYTES: &'static str = "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} NAR, {binary_bytes_per_sec}, {msg} (ETA {eta})";
    const PATHS: &'static str =
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} paths, {msg} (ETA {eta})";

    fn new(enabled: bool) -> BuildProgress {
        BuildProgress {
            bar: progress_bar(enabled, 0, Self::PATHS),
            in_bytes: false,
            paths: 0,
            paths_done: 0,
            nar_bytes_done: 0,
            eta_restarted: false,
        }
    }

    fn update(&mut self, event: Progress) {
        let Some(bar) = &self.bar else { return };
        match event {
            Progress::Total { paths, nar_bytes } => {
                self.paths = paths;
                match nar_bytes {
                    Some(total) => {
                        if !self.in_bytes {
                            self.in_bytes = true;
                            bar.set_style(
                                indicatif::ProgressStyle::with_template(Self::BYTES)
                                    .expect("valid template"),
                            );
                        }
                        bar.set_length(total);
                        bar.set_message(format!("{}/{} paths", self.paths_done, paths));
                    }
                    None => bar.set_length(paths),
                }
            }
            Progress::Bytes { nar_bytes } => {
                if self.in_bytes {
                    bar.set_position(bar.position().max(nar_bytes));
                    if !self.eta_restarted {
                        self.eta_restarted = true;
                        bar.reset_eta();
                    }
                }
            }
            Progress::PathDone { nar_size, .. } => {
                self.paths_done += 1;
                self.nar_bytes_done += nar_size;
                if self.in_bytes {
                    bar.set_position(bar.position().max(self.nar_bytes_done));
                    bar.set_message(format!("{}/{} paths", self.paths_done, self.paths));
                } else {
                    let secs = bar.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!(
                        "{} NAR, {}/s",
                        human_bytes(self.nar_bytes_done),
                        human_bytes((self.nar_bytes_done as f64 / secs) as u64)
                    ));
                    bar.inc(1);
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A progress bar on stderr when it is a terminal and `enabled`, else none.
fn progress_bar(enabled: bool, len: u64, template: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template"));
    Some(bar)
}

/// The last component of `path` made absolute and cleaned of `.` and `..` without following
/// symlinks: the name `nix-store --add` gives a store path.
fn lexical_file_name(path: &Path) -> Option<String> {
    let abs = std::path::absolute(path).ok()?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in abs.components() {
        match c {
            std::path::Component::Normal(n) => parts.push(n),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.last().map(|n| n.to_string_lossy().into_owned())
}

/// The inspector's files when running from a checkout (`www/` beside `target/`).
fn default_inspector() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join("www"))
        .find(|w| w.join("index.html").is_file())
}
