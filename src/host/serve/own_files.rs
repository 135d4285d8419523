//! The server's own files, under the one prefix reserved for them (`/_nar-tool/`, which no cache
//! key can start with): the inspector's page, style and modules, and the npm package's browser
//! entry, modules and wasm build. An allowlist: nothing else of those folders is ever served
//! (no tests, no `package.json`, no `node_modules`), and only as HTML, CSS, JavaScript or wasm.
//!
//! | URL under `/_nar-tool/`   | file                                  |
//! |---------------------------|---------------------------------------|
//! | (empty), `index.html`     | the inspector's `index.html`          |
//! | `style.css`               | the inspector's `style.css`           |
//! | `js/<name>.js`            | the inspector's `js/<name>.js`        |
//! | `pkg/browser.js`          | the package's `browser.js`            |
//! | `pkg/lib/<name>.js`       | the package's `lib/<name>.js`         |
//! | `pkg/wasm/<name>.{js,wasm}` | the wasm build's files              |

use super::embedded::embedded;
use super::*;

/// Where a file under `/_nar-tool/` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Folder {
    Inspector,
    Package,
    Wasm,
}

/// The folder and the path in it of a name under `/_nar-tool/`, if it is one of the files served.
pub(super) fn own_file(rest: &str) -> Option<(Folder, String)> {
    let file = |folder, path: &str| Some((folder, path.to_string()));
    match rest.split_once('/') {
        None => match rest {
            "" | "index.html" => file(Folder::Inspector, "index.html"),
            "style.css" => file(Folder::Inspector, "style.css"),
            _ => None,
        },
        Some(("js", name)) if plain(name, &[".js"]) => file(Folder::Inspector, rest),
        Some(("pkg", "browser.js")) => file(Folder::Package, "browser.js"),
        Some(("pkg", inner)) => match inner.split_once('/') {
            Some(("lib", name)) if plain(name, &[".js"]) => file(Folder::Package, inner),
            Some(("wasm", name)) if plain(name, &[".js", ".wasm"]) => file(Folder::Wasm, name),
            _ => None,
        },
        _ => None,
    }
}

/// A file name of letters, digits, `-`, `_` and dots, not hidden, with one of `extensions`.
fn plain(name: &str, extensions: &[&str]) -> bool {
    !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && extensions
            .iter()
            .any(|e| name.len() > e.len() && name.ends_with(e))
}

/// The content type of a served file (by the extensions the allowlist lets through).
pub(super) fn content_type(path: &str) -> &'static str {
    if path.ends_with(".html") {
        "text/html; charset=utf-8"
    } else if path.ends_with(".css") {
        "text/css; charset=utf-8"
    } else if path.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if path.ends_with(".wasm") {
        "application/wasm"
    } else {
        "application/octet-stream"
    }
}

impl Site {
    /// A file under `/_nar-tool/`: opened beneath its folder when one was given, else the one
    /// built into the binary; `Ok(None)` if it is not one of the files served, or there is none.
    pub(super) fn open_own(&self, rest: &str) -> io::Result<Option<(Object, &'static str)>> {
        let Some((folder, path)) = own_file(rest) else {
            return Ok(None);
        };
        let dir = match folder {
            Folder::Inspector => self.inspector.as_ref(),
            Folder::Package => self.pkg.as_ref(),
            Folder::Wasm => self.wasm.as_ref(),
        };
        let object = match dir {
            Some(dir) => dir.open_regular(&path)?.map(|(file, meta)| Object {
                meta,
                body: Box::new(file),
            }),
            None => embedded(folder, &path).map(|file| Object {
                meta: ObjectMeta {
                    size: file.bytes.len() as u64,
                    modified: None,
                    etag: file.etag.to_string(),
                },
                body: Box::new(io::Cursor::new(file.bytes)),
            }),
        };
        Ok(object.map(|object| (object, content_type(&path))))
    }

    /// Whether `/_nar-tool/` has a page to show: a folder given, or the one built in.
    pub(super) fn has_inspector(&self) -> bool {
        self.inspector.is_some() || embedded(Folder::Inspector, "index.html").is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_inspector_and_the_browser_entry_are_served() {
        let served = [
            ("", Folder::Inspector, "index.html"),
            ("index.html", Folder::Inspector, "index.html"),
            ("style.css", Folder::Inspector, "style.css"),
            ("js/app.js", Folder::Inspector, "js/app.js"),
            ("pkg/browser.js", Folder::Package, "browser.js"),
            (
                "pkg/lib/http-source.js",
                Folder::Package,
                "lib/http-source.js",
            ),
            ("pkg/wasm/nar_tool.js", Folder::Wasm, "nar_tool.js"),
            (
                "pkg/wasm/nar_tool_bg.wasm",
                Folder::Wasm,
                "nar_tool_bg.wasm",
            ),
        ];
        for (rest, folder, path) in served {
            assert_eq!(own_file(rest), Some((folder, path.to_string())), "{rest}");
        }
        for rest in [
            "package.json",
            "test/e2e.test.mjs",
            "js/",
            "js/.hidden.js",
            "js/app.mjs",
            "js/sub/app.js",
            "js/.js",
            "logo.svg",
            "docs/inspector.png",
            "pkg/",
            "pkg/index.js",
            "pkg/package.json",
            "pkg/lib/",
            "pkg/lib/api.ts",
            "pkg/test/api.test.js",
            "pkg/node_modules/x/index.js",
            "pkg/wasm/package.json",
            "pkg/wasm/nar_tool.d.ts",
            "pkg/wasm/snippets/x.js",
            "node_modules/x/index.js",
        ] {
            assert_eq!(own_file(rest), None, "{rest}");
        }
    }
}
