//! A cache in a local directory, as [`CacheStorage`]: reads stay inside the directory (paths
//! with `..` or leading `/` are refused, symlinks resolving outside it are not followed).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::cache::verify::CacheStorage;

pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    pub fn new(root: &Path) -> io::Result<DirStorage> {
        Ok(DirStorage {
            root: root.canonicalize()?,
        })
    }

    /// The file for a relative path, if it stays inside the root.
    fn resolve(&self, rel: &str) -> io::Result<Option<PathBuf>> {
        if rel.is_empty()
            || rel.starts_with('/')
            || rel.split('/').any(|c| c == ".." || c.is_empty())
            || rel.contains('\0')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel:?} is not a path inside the cache"),
            ));
        }
        // The root is canonical: while no component below it is a symlink, the path is inside.
        // (Two lstat calls for `nar/x`, where canonicalize would look at every component of the
        // absolute path.) A symlink is resolved and must stay inside.
        let mut p = self.root.clone();
        let mut symlink = false;
        for component in rel.split('/') {
            p.push(component);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    symlink = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        if !symlink {
            return Ok(Some(p));
        }
        let p = self.root.join(rel);
        match p.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Ok(Some(real)),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{rel} links outside the cache"),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl CacheStorage for DirStorage {
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        let Some(p) = self.resolve(rel)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        File::open(p)?
            .take(limit as u64 + 1)
            .read_to_end(&mut buf)?;
        if buf.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{rel} is larger than {limit} bytes"),
            ));
        }
        Ok(Some(buf))
    }

    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>> {
        let Some(p) = self.resolve(rel)? else {
            return Ok(None);
        };
        Ok(Some(Box::new(File::open(p)?)))
    }

    fn size(&self, rel: &str) -> io::Result<Option<u64>> {
        let Some(p) = self.resolve(rel)? else {
            return Ok(None);
        };
        let meta = fs::metadata(p)?;
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some(meta.len()))
    }

    fn list_narinfos(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".narinfo") && !name.starts_with('.') {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn list_nar_files(&self) -> io::Result<Vec<String>> {
        let dir = self.root.join("nar");
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if !name.starts_with('.') {
                        out.push(format!("nar/{name}"));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }
}

/// The native (C-backed) decoders as a [`crate::cache::verify::DecoderFn`].
pub fn native_decoder<'a>(
    method: crate::compression::Compression,
    input: Box<dyn Read + 'a>,
) -> io::Result<Box<dyn Read + 'a>> {
    crate::host::codec::decoder(method, input)
}
