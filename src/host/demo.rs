//! The embedded default job: lays out a small sample store — real content-addressed store paths
//! (a `builtins.toFile`-style text path, `nix-store --add`-style source paths, one referring to
//! the others) with a closureInfo `registration` file — so `build-cache` and `verify` can be
//! shown end to end on a machine with no Nix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::hash::{to_hex, Hash, HashAlgo};
use crate::host::fs::{restore_path, CaseHack};
use crate::nar::tree::Node;
use crate::store_path::{make_source_path, make_text_path, StoreDir, StorePath};

/// The sample store: its root (`ROOT/nix/store/…`), the registration file, and its paths (top last).
pub struct SampleStore {
    pub root: PathBuf,
    pub registration: PathBuf,
    pub paths: Vec<StorePath>,
}

fn file(contents: &str, executable: bool) -> Node {
    Node::Regular {
        executable,
        contents: contents.as_bytes().to_vec(),
    }
}

fn dir(entries: Vec<(&str, Node)>) -> Node {
    Node::Directory(
        entries
            .into_iter()
            .map(|(n, node)| (n.as_bytes().to_vec(), node))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Writes the sample store under `root` (which must not exist yet).
pub fn lay_out_sample_store(root: &Path) -> std::io::Result<SampleStore> {
    let store_dir = StoreDir::default();
    let physical = root.join("nix/store");
    fs::create_dir_all(&physical)?;
    let mut registration = String::new();
    let mut paths = Vec::new();
    let mut add =
        |path: StorePath, node: &Node, refs: &[StorePath]| -> std::io::Result<StorePath> {
            let nar = node.to_nar();
            restore_path(&nar[..], &physical.join(path.base_name()), CaseHack(false))
                .map_err(std::io::Error::other)?;
            let _ = writeln!(registration, "{}", store_dir.display(&path));
            let _ = writeln!(
                registration,
                "{}",
                to_hex(Hash::of(HashAlgo::Sha256, &nar).digest())
            );
            let _ = writeln!(registration, "{}\n\n{}", nar.len(), refs.len());
            for r in refs {
                let _ = writeln!(registration, "{}", store_dir.display(r));
            }
            paths.push(path.clone());
            Ok(path)
        };
    let invalid = |e: crate::store_path::StorePathError| std::io::Error::other(e.to_string());

    // A text path, as `builtins.toFile "greeting" "…"` makes it.
    let greeting_text = "Hello from a content-addressed store path!\n";
    let greeting_node = file(greeting_text, false);
    let greeting = make_text_path(
        &store_dir,
        "greeting",
        &Hash::of(HashAlgo::Sha256, greeting_text.as_bytes()),
        &[],
    )
    .map_err(invalid)?;
    let greeting = add(greeting, &greeting_node, &[])?;

    // A library tree, as `nix-store --add` makes it.
    let lib_node = dir(vec![
        (
            "include",
            dir(vec![("hello.h", file("int hello(void);\n", false))]),
        ),
        (
            "lib",
            dir(vec![
                (
                    "libhello.so",
                    file(&"\u{7f}ELF sample library\n".repeat(200), false),
                ),
                (
                    "libhello.so.1",
                    Node::Symlink {
                        target: b"libhello.so".to_vec(),
                    },
                ),
            ]),
        ),
    ]);
    let lib_nar_hash = Hash::of(HashAlgo::Sha256, &lib_node.to_nar());
    let lib = add(
        make_source_path(&store_dir, "libhello-1.0", &lib_nar_hash, &[], false).map_err(invalid)?,
        &lib_node,
        &[],
    )?;

    // An application referring to both by their store paths.
    let script = format!(
        "#!/bin/sh\n# links against {}/lib/libhello.so\nexec cat {}\n",
        store_dir.display(&lib),
        store_dir.display(&greeting)
    );
    let app_node = dir(vec![
        ("bin", dir(vec![("hello", file(&script, true))])),
        (
            "share",
            dir(vec![(
                "doc",
                dir(vec![("README", file("A sample application.\n", false))]),
            )]),
        ),
    ]);
    let app_refs = vec![greeting.clone(), lib.clone()];
    let app_nar_hash = Hash::of(HashAlgo::Sha256, &app_node.to_nar());
    let app = make_source_path(&store_dir, "hello-app-1.0", &app_nar_hash, &app_refs, false)
        .map_err(invalid)?;
    add(app, &app_node, &app_refs)?;

    let registration_path = root.join("registration");
    fs::write(&registration_path, registration)?;
    Ok(SampleStore {
        root: root.to_path_buf(),
        registration: registration_path,
        paths,
    })
}
