//! Replays every saved fuzz input (crashes found by `cargo fuzz`, and seeds) through exactly the
//! code the fuzz targets run (`fuzz/checks.rs`), plus the corpus files; none may panic.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{corpus, fixtures};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = fixtures().join("fuzz-regressions").join(target);
    let v = files_in(&dir);
    assert!(!v.is_empty(), "no inputs in {}", dir.display());
    v
}

fn replay(target: &str, inputs: &[PathBuf], check: fn(&[u8])) {
    for p in inputs {
        let data = fs::read(p).unwrap();
        // Name the input if it panics.
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target}: {} panics", p.display());
    }
}

#[test]
fn nar_reader_inputs_do_not_panic() {
    let mut inputs = regressions("nar_reader");
    inputs.extend(files_in(&corpus().join("nar")));
    inputs.extend(files_in(&corpus().join("caches/none/nar")));
    replay("nar_reader", &inputs, checks::nar_reader);
}

#[test]
fn narinfo_inputs_do_not_panic() {
    let mut inputs = regressions("narinfo");
    for cache in ["xz", "zstd", "bzip2", "none", "xz-parallel", "unsigned"] {
        inputs.extend(
            files_in(&corpus().join("caches").join(cache))
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "narinfo")),
        );
    }
    assert!(inputs.len() > 54);
    replay("narinfo", &inputs, checks::narinfo);
}

#[test]
fn nixbase32_inputs_do_not_panic() {
    let inputs = regressions("nixbase32");
    replay("nixbase32", &inputs, checks::nixbase32);
}

#[test]
fn the_checks_catch_what_they_should() {
    // The checks are not vacuous: a valid NAR passes, and the narinfo check really re-parses.
    let nar = fs::read(corpus().join("nar/case-collision.nar")).unwrap();
    checks::nar_reader(&nar);
    let text =
        fs::read(corpus().join("caches/xz/8bswc883h867a21h70j0gvrppyavddgp.narinfo")).unwrap();
    checks::narinfo(&text);
    checks::nixbase32(b"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
}

#[test]
fn push_inputs_do_not_panic() {
    let mut inputs = regressions("push");
    inputs.extend(files_in(&corpus().join("nar")));
    replay("push", &inputs, checks::push);
}
