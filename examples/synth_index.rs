//! Writes the lookup index of a synthetic cache of N paths into DIR (for `benches/index.sh`):
//! names `pkg-<i>-1.<i%7>`, each path referring to a popular `glibc`, up to 8 earlier paths and
//! sometimes itself, NAR and file sizes made up. Prints hash parts to stdout for lookups, one
//! per line: glibc's, then those of 100 paths spread over the index.
//!
//! `cargo run --release --example synth_index -- DIR N`

use std::time::Instant;

use nar_tool::cache::index::{publish, EntryInfo, IndexContent};
use nar_tool::host::dir_storage::DirStorage;
use nar_tool::store_path::{StoreDir, StorePath};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: synth_index DIR N");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("N is a number");
    let path = |i: u64, name: &str| {
        let digest: [u8; 20] = sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(i.to_le_bytes()),
        )[..20]
            .try_into()
            .unwrap();
        StorePath::from_parts(&digest, name).unwrap()
    };
    let started = Instant::now();
    let glibc = path(u64::MAX, "glibc-2.40");
    let mut content = IndexContent::new(StoreDir::default());
    content.paths.insert(
        glibc.clone(),
        EntryInfo {
            nar_size: 30 << 20,
            file_size: Some(8 << 20),
            references: [glibc.clone()].into(),
        },
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below.max(1)
    };
    let mut names: Vec<StorePath> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let p = path(i, &format!("pkg-{i}-1.{}", i % 7));
        let mut references = std::collections::BTreeSet::from([glibc.clone()]);
        for _ in 0..next(9).min(i) {
            let r = next(i);
            references.insert(names[r as usize].clone());
        }
        if i % 5 == 0 {
            references.insert(p.clone());
        }
        content.paths.insert(
            p.clone(),
            EntryInfo {
                nar_size: 1000 + next(1 << 24),
                file_size: Some(500 + next(1 << 22)),
                references,
            },
        );
        names.push(p);
    }
    eprintln!("made {n} paths in {:.1}s", started.elapsed().as_secs_f64());
    let storage = DirStorage::create(std::path::Path::new(&dir)).expect("the cache directory");
    let started = Instant::now();
    let done = publish::publish(&storage, |_| Ok(content.clone())).expect("publishing");
    eprintln!(
        "published {} paths in {:.1}s",
        done.paths,
        started.elapsed().as_secs_f64()
    );
    println!("{}", glibc.hash_part());
    let step = (names.len() / 100).max(1);
    for p in names.iter().step_by(step) {
        println!("{}", p.hash_part());
    }
}
