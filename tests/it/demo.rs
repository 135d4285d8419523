//! The README's main job: `nar-tool demo` lays out a sample store with no Nix, builds a signed
//! cache and verifies it; when Nix is installed, Nix substitutes from that cache.

use std::process::Command;

use crate::common;

#[test]
fn demo_builds_and_verifies_a_cache_nix_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(common::bin())
        .arg("demo")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 paths") && stdout.contains("OK: 0 problems"),
        "{stdout}"
    );
    let narinfos = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".narinfo")
        })
        .count();
    assert_eq!(narinfos, 3);
    // The text path is the one `builtins.toFile "greeting" …` gives (checked against Nix 2.8).
    assert!(
        stdout.contains("/nix/store/m3i62qrzgah0zjbrs78hnvfz6h8lxg8p-greeting"),
        "{stdout}"
    );

    if Command::new("nix").arg("--version").output().is_err() {
        println!("SKIP: nix is not installed; not substituting from the demo cache");
        return;
    }
    let top = stdout
        .lines()
        .find(|l| l.contains("-hello-app-1.0"))
        .unwrap()
        .trim()
        .to_string();
    let key = std::fs::read_to_string(dir.join("cache-key.public")).unwrap();
    let root = tmp.path().join("client");
    let from = format!("file://{}", dir.join("cache").display());
    let out = common::nix_copy_from(&from, &root, &key, &[&top]);
    assert!(
        out.status.success(),
        "nix could not substitute from the demo cache: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(root
        .join(top.trim_start_matches('/'))
        .join("bin/hello")
        .exists());
}
