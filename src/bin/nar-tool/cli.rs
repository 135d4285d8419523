//! The command line: parses flags, dispatches to a command, maps errors to exit codes.

use std::io;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::args::UsageError;
use crate::commands::{
    auth, build_cache, cat, demo, dump, fetch, gc, hash, index, keep_paths, key, lookup, ls,
    narinfo, optimise, restore, serve, sign, store_path, verify, why_depends,
};

#[derive(Parser)]
#[command(name = "nar-tool", version, about = "Build, serve, inspect and verify Nix binary caches, byte-for-byte with Nix.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Dump(dump::DumpArgs),
    Restore(restore::RestoreArgs),
    Hash(hash::HashArgs),
    Ls(ls::LsArgs),
    Cat(cat::CatArgs),
    StorePath(store_path::StorePathArgs),
    Key(key::KeyArgs),
    Sign(sign::SignArgs),
    BuildCache(build_cache::BuildCacheArgs),
    Verify(verify::VerifyArgs),
    Demo(demo::DemoArgs),
    Serve(serve::ServeArgs),
    Auth(auth::AuthArgs),
    Narinfo(narinfo::NarinfoArgs),
    Gc(gc::GcArgs),
    KeepPaths(keep_paths::KeepPathsArgs),
    Fetch(fetch::FetchArgs),
    Optimise(optimise::OptimiseArgs),
    Lookup(lookup::LookupArgs),
    Index(index::IndexArgs),
    WhyDepends(why_depends::WhyDependsArgs),
}

/// Runs the command line; usage errors exit 2 (clap's, and [`UsageError`]), other errors 1, a
/// closed stdout 0.
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
            eprintln!("nar-tool: error: {}", error_text(&e));
            if e.downcast_ref::<UsageError>().is_some() {
                eprintln!("For more information, try '--help'.");
                return ExitCode::from(2);
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, `: `-separated, each said once: a cause whose text the message
/// already holds (an OS error a path's error quotes) is left out.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if text.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s);
    }
    text
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Dump(args) => dump::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Hash(args) => hash::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Cat(args) => cat::run(args),
        Command::StorePath(args) => store_path::run(args),
        Command::Key(args) => key::run(args),
        Command::Sign(args) => sign::run(args),
        Command::BuildCache(args) => build_cache::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Auth(args) => auth::run(args),
        Command::Narinfo(args) => narinfo::run(args),
        Command::Gc(args) => gc::run(args),
        Command::KeepPaths(args) => keep_paths::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Optimise(args) => optimise::run(args),
        Command::Lookup(args) => lookup::run(args),
        Command::Index(args) => index::run(args),
        Command::WhyDepends(args) => why_depends::run(args),
    }
}
