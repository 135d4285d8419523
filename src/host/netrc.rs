//! Credentials for HTTP caches, found where Nix finds them: a netrc file (`machine HOST login
//! USER password SECRET`, or a `default` entry), sent as HTTP Basic — what Nix's curl sends from
//! its `netrc-file`, and what `nar-tool serve --auth` accepts.
//!
//! The file is the one a command's `--netrc-file` names ([`configure`]); else the first that
//! exists of `$NIX_CONF_DIR/netrc` (`/etc/nix/netrc`: Nix's `netrc-file` default), `$NETRC` and
//! `~/.netrc`. A file named by the flag must be readable; a default one that is not (Nix's is
//! often root's alone) is passed over. A header goes only with the requests of a cache whose
//! host the entry names (the HTTP client drops it on a redirect to another host).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;

/// A netrc file larger than this is refused (a few entries are a few hundred bytes).
const MAX_NETRC: u64 = 1 << 20;

/// The file named on the command line, if one was.
static CHOSEN: OnceLock<PathBuf> = OnceLock::new();
/// The file read (once per process) and its entries; `None` when there is none.
static LOADED: OnceLock<Result<Option<Loaded>, String>> = OnceLock::new();

struct Loaded {
    path: PathBuf,
    netrc: ::netrc::Netrc,
}

/// Use `file` for credentials instead of the default files (the first call counts).
pub fn configure(file: PathBuf) {
    let _ = CHOSEN.set(file);
}

/// Where credentials are looked for, in order (for messages and for the search).
pub fn candidates() -> Vec<PathBuf> {
    if let Some(chosen) = CHOSEN.get() {
        return vec![chosen.clone()];
    }
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let nix_conf = var("NIX_CONF_DIR").map_or_else(|| PathBuf::from("/etc/nix"), PathBuf::from);
    let mut files = vec![nix_conf.join("netrc")];
    files.extend(var("NETRC").map(PathBuf::from));
    files.extend(var("HOME").map(|home| PathBuf::from(home).join(".netrc")));
    files
}

/// Credentials found for what one cache asks.
#[derive(Clone)]
pub struct Credentials {
    login: String,
    password: String,
    /// The netrc file they are from.
    pub source: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization` header's value, marked sensitive (never logged by the client).
    pub fn basic_header(&self) -> http::HeaderValue {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.login, self.password));
        let mut value = http::HeaderValue::from_str(&format!("Basic {token}"))
            .expect("base64 is a valid header value");
        value.set_sensitive(true);
        value
    }

    /// Who they are for, as a message may say it.
    pub fn login(&self) -> &str {
        &self.login
    }
}

/// The credentials for `host` (a URL's host name), if a netrc file has an entry for it or a
/// `default` one; an error when the file named on the command line cannot be read, or any file
/// found is malformed.
pub fn for_host(host: &str) -> io::Result<Option<Credentials>> {
    let loaded = LOADED
        .get_or_init(load)
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))?;
    let Some(loaded) = loaded else {
        return Ok(None);
    };
    Ok(
        lookup(&loaded.netrc, host).map(|(login, password)| Credentials {
            login,
            password,
            source: loaded.path.clone(),
        }),
    )
}

/// An entry for `host` (case does not matter in host names), else the `default` one.
fn lookup(netrc: &::netrc::Netrc, host: &str) -> Option<(String, String)> {
    let entry = netrc
        .hosts
        .iter()
        .find(|(machine, _)| *machine != "default" && machine.eq_ignore_ascii_case(host))
        .or_else(|| netrc.hosts.get_key_value("default"))?
        .1;
    (!entry.login.is_empty() || !entry.password.is_empty())
        .then(|| (entry.login.clone(), entry.password.clone()))
}

fn load() -> Result<Option<Loaded>, String> {
    let chosen = CHOSEN.get().is_some();
    for path in candidates() {
        match read_bounded(&path) {
            Ok(text) => {
                let netrc =
                    parse(&text).map_err(|e| format!("netrc file {}: {e}", path.display()))?;
                return Ok(Some(Loaded { path, netrc }));
            }
            Err(e) if chosen => return Err(format!("netrc file {}: {e}", path.display())),
            Err(_) => continue,
        }
    }
    Ok(None)
}

/// The netrc text's entries.
pub fn parse(text: &str) -> Result<::netrc::Netrc, String> {
    text.parse::<::netrc::Netrc>().map_err(|e| e.to_string())
}

/// A regular file's text, at most [`MAX_NETRC`] bytes.
fn read_bounded(path: &Path) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_NETRC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} bytes: more than a netrc file has ({MAX_NETRC} at most)",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_NETRC).read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_for_the_host_wins_over_default_and_case_does_not_matter() {
        let netrc = parse(
            "default login anyone password open\n\
             machine Cache.Example login ci password s3cret\n\
             machine other.example login x password y\n",
        )
        .unwrap();
        assert_eq!(
            lookup(&netrc, "cache.example"),
            Some(("ci".into(), "s3cret".into()))
        );
        assert_eq!(
            lookup(&netrc, "elsewhere"),
            Some(("anyone".into(), "open".into()))
        );
        let only = parse("machine a login u password p").unwrap();
        assert_eq!(lookup(&only, "b"), None);
    }

    #[test]
    fn the_header_is_basic_and_sensitive() {
        let c = Credentials {
            login: "ci".into(),
            password: "pa:ss".into(),
            source: PathBuf::from("/x"),
        };
        let h = c.basic_header();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic Y2k6cGE6c3M=");
        assert!(!format!("{c:?}").contains("pa:ss"));
    }
}
