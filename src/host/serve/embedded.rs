//! The inspector built into the binary (the `embed-inspector` feature; `build.rs` lists the
//! files): what `/_nar-tool/` serves when no folder is given for that part, so that `serve` from an
//! installed or copied binary has its inspector, and one whose wasm build matches the binary's own
//! core. Only files of the allowlist in `own_files.rs` are embedded, under the same names.

use super::own_files::Folder;

/// One embedded file: which part it belongs to, its path in that part, its ETag (a hash of its
/// bytes, quoted) and its bytes.
pub(super) struct EmbeddedFile {
    pub folder: Folder,
    pub path: &'static str,
    pub etag: &'static str,
    pub bytes: &'static [u8],
}

#[cfg(feature = "embed-inspector")]
static FILES: &[EmbeddedFile] = include!(concat!(env!("OUT_DIR"), "/embedded_inspector.rs"));
#[cfg(not(feature = "embed-inspector"))]
static FILES: &[EmbeddedFile] = &[];

/// The embedded file at `path` of `folder`, if this binary has one.
pub(super) fn embedded(folder: Folder, path: &str) -> Option<&'static EmbeddedFile> {
    FILES.iter().find(|f| f.folder == folder && f.path == path)
}

/// Whether this binary carries the inspector (its page, the package's browser entry and the wasm
/// build).
pub fn has_inspector() -> bool {
    [
        (Folder::Inspector, "index.html"),
        (Folder::Package, "browser.js"),
        (Folder::Wasm, "nar_tool_bg.wasm"),
    ]
    .into_iter()
    .all(|(folder, path)| embedded(folder, path).is_some())
}
