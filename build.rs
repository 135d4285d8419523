//! With the `embed-inspector` feature, puts the browser inspector into the `nar-tool` binary, so
//! that `serve` from an installed or copied binary has it: the inspector's page, style and
//! modules (`www/`), the npm package's browser entry (`pkg/browser.js`, `pkg/lib/`) and the wasm
//! build of this crate (wasm-bindgen's `--target web` output).
//!
//! The wasm build comes from `NAR_TOOL_WASM_DIR` when set (a folder holding `nar_tool.js` and
//! `nar_tool_bg.wasm`, as `wasm-pack build --target web` leaves in `pkg/wasm`); otherwise it is
//! made here: this crate's library built for `wasm32-unknown-unknown` by a second cargo (its own
//! target folder under `OUT_DIR`, the same lock file), then bound by `wasm-bindgen-cli-support` at
//! the version `Cargo.lock` pins for `wasm-bindgen`. Either way the files are listed in
//! `OUT_DIR/embedded_inspector.rs`, read by `src/host/serve/embedded.rs` with `include_bytes!`.
//!
//! Without the feature this does nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "embed-inspector")]
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        if let Err(e) = embed::embed() {
            // A build asked for the inspector that cannot have it fails, saying why.
            eprintln!("error: embedding the inspector (feature embed-inspector): {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(feature = "embed-inspector")]
mod embed {
    use std::env;
    use std::fmt::Write as _;
    use std::fs;
    use std::hash::{DefaultHasher, Hash, Hasher};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub fn embed() -> Result<(), String> {
        let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
        let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
        println!("cargo:rerun-if-env-changed=NAR_TOOL_WASM_DIR");
        let wasm = match env::var_os("NAR_TOOL_WASM_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => build_wasm(&manifest, &out)?,
        };
        let www = manifest.join("www");
        let pkg = manifest.join("pkg");
        let mut files = Vec::new();
        for name in ["index.html", "style.css"] {
            files.push(("Inspector", name.to_string(), www.join(name)));
        }
        for name in plain_files(&www.join("js"), &[".js"])? {
            files.push((
                "Inspector",
                format!("js/{name}"),
                www.join("js").join(&name),
            ));
        }
        files.push(("Package", "browser.js".into(), pkg.join("browser.js")));
        for name in plain_files(&pkg.join("lib"), &[".js"])? {
            files.push((
                "Package",
                format!("lib/{name}"),
                pkg.join("lib").join(&name),
            ));
        }
        let bound = plain_files(&wasm, &[".js", ".wasm"])?;
        for needed in ["nar_tool.js", "nar_tool_bg.wasm"] {
            if !bound.iter().any(|n| n == needed) {
                return Err(format!(
                    "{} has no {needed}: not a wasm-bindgen --target web build of nar-tool",
                    wasm.display()
                ));
            }
        }
        for name in bound {
            files.push(("Wasm", name.clone(), wasm.join(&name)));
        }

        let mut table = String::from("&[\n");
        for (folder, path, file) in files {
            let bytes = fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            println!("cargo:rerun-if-changed={}", file.display());
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            writeln!(
                table,
                "    EmbeddedFile {{ folder: Folder::{folder}, path: {path:?}, etag: \"\\\"{:016x}-{}\\\"\", bytes: include_bytes!({:?}) }},",
                hasher.finish(),
                bytes.len(),
                file.display().to_string(),
            )
            .expect("writing to a String");
        }
        table.push(']');
        // The folders too, so that a module added or removed is seen.
        for dir in [www.join("js"), pkg.join("lib"), wasm] {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
        let dest = out.join("embedded_inspector.rs");
        fs::write(&dest, table).map_err(|e| format!("{}: {e}", dest.display()))
    }

    /// The names of the regular files directly in `dir` with one of `extensions`, sorted; the same
    /// rule as the server's allowlist (letters, digits, `-`, `_`, dots; not hidden).
    fn plain_files(dir: &Path, extensions: &[&str]) -> Result<Vec<String>, String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let plain = !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && extensions.iter().any(|e| name.ends_with(e));
            if plain && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// This crate's library for `wasm32-unknown-unknown`, bound for the web; the folder of the
    /// bound files.
    fn build_wasm(manifest: &Path, out: &Path) -> Result<PathBuf, String> {
        let target_dir = out.join("wasm-target");
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(&cargo);
        // Its stdout to stderr: a build script's stdout is read by cargo as instructions.
        command
            .stdout(std::io::stderr())
            .args([
                "build",
                "--lib",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .arg("--manifest-path")
            .arg(manifest.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir);
        if manifest.join("Cargo.lock").is_file() {
            command.arg("--locked");
        }
        // The outer build's settings are for the host, not for this build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
        ] {
            command.env_remove(var);
        }
        let status = command
            .status()
            .map_err(|e| format!("running {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "the wasm32 build failed ({status}); is the target installed? \
                 (rustup target add wasm32-unknown-unknown)"
            ));
        }
        let input = target_dir.join("wasm32-unknown-unknown/release/nar_tool.wasm");
        let bound = out.join("wasm-bound");
        fs::create_dir_all(&bound).map_err(|e| format!("{}: {e}", bound.display()))?;
        wasm_bindgen_cli_support::Bindgen::new()
            .input_path(&input)
            .web(true)
            .map_err(|e| e.to_string())?
            .typescript(false)
            .out_name("nar_tool")
            .generate(&bound)
            .map_err(|e| format!("wasm-bindgen on {}: {e}", input.display()))?;
        Ok(bound)
    }
}
