//! The ATerm text of a `.drv` file, read and written byte for byte as Nix 2.8's
//! `parseDerivation` and `Derivation::unparse` do: `Derive([outputs],[input derivations],
//! [input sources],"platform","builder",[args],[env])`. Strings are byte strings; `\n`, `\r`,
//! `\t` are escapes, any other escaped byte stands for itself. Where Nix keeps one of several
//! entries of the same key, so does this: the first output of a name, the last input
//! derivation and environment variable of a name. Text after the closing parenthesis is
//! ignored, as Nix ignores it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Derivation, DerivationError, Output};
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{FileIngestion, StoreDir, StorePath};

/// A cursor over the bytes of a `.drv`.
struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: impl Into<String>) -> DerivationError {
        DerivationError::Syntax {
            at: self.at,
            message: what.into(),
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), DerivationError> {
        let end = self.at + s.len();
        if self.text.get(self.at..end) == Some(s.as_bytes()) {
            self.at = end;
            Ok(())
        } else {
            Err(self.bad(format!("expected {s:?}")))
        }
    }

    /// Nix's `endOfList`: a comma goes on, `]` ends; anything else (the first element) goes on.
    fn end_of_list(&mut self) -> Result<bool, DerivationError> {
        match self.text.get(self.at) {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(b']') => {
                self.at += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(self.bad("the text ends inside a list")),
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, DerivationError> {
        self.expect("\"")?;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.text.get(self.at) else {
                return Err(self.bad("the text ends inside a string"));
            };
            self.at += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.text.get(self.at) else {
                        return Err(self.bad("the text ends inside a string"));
                    };
                    self.at += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                }
                other => out.push(other),
            }
        }
    }

    /// A string that must be an absolute path (Nix's `parsePath`).
    fn path(&mut self) -> Result<Vec<u8>, DerivationError> {
        let s = self.string()?;
        if s.first() != Some(&b'/') {
            return Err(self.bad(format!(
                "bad path {:?} in derivation",
                String::from_utf8_lossy(&s)
            )));
        }
        Ok(s)
    }

    fn strings(&mut self, paths: bool) -> Result<BTreeSet<Vec<u8>>, DerivationError> {
        let mut out = BTreeSet::new();
        while !self.end_of_list()? {
            out.insert(if paths { self.path()? } else { self.string()? });
        }
        Ok(out)
    }
}

fn utf8(s: Vec<u8>, what: &str) -> Result<String, DerivationError> {
    String::from_utf8(s).map_err(|e| DerivationError::Invalid(format!("{what} is not UTF-8: {e}")))
}

fn store_path(store_dir: &StoreDir, s: Vec<u8>) -> Result<StorePath, DerivationError> {
    let s = utf8(s, "a store path")?;
    store_dir
        .parse_path(&s)
        .map_err(|e| DerivationError::Invalid(e.to_string()))
}

/// Nix's `parseDerivationOutput`.
fn output(
    store_dir: &StoreDir,
    path: Vec<u8>,
    hash_algo: Vec<u8>,
    hash: Vec<u8>,
) -> Result<Output, DerivationError> {
    let absolute = |p: &[u8]| {
        if p.first() == Some(&b'/') {
            Ok(())
        } else {
            Err(DerivationError::Invalid(format!(
                "bad path {:?} in derivation",
                String::from_utf8_lossy(p)
            )))
        }
    };
    if hash_algo.is_empty() {
        if path.is_empty() {
            return Ok(Output::Deferred);
        }
        absolute(&path)?;
        return Ok(Output::InputAddressed(store_path(store_dir, path)?));
    }
    let algo = utf8(hash_algo, "an output's hash algorithm")?;
    let (method, algo) = match algo.strip_prefix("r:") {
        Some(a) => (FileIngestion::Recursive, a),
        None => (FileIngestion::Flat, algo.as_str()),
    };
    let algo: HashAlgo = algo
        .parse()
        .map_err(|e| DerivationError::Invalid(format!("output hash algorithm: {e}")))?;
    let unexpected_path = || {
        DerivationError::Invalid(format!(
            "an output without a known path names the path {:?}",
            String::from_utf8_lossy(&path)
        ))
    };
    match hash.as_slice() {
        b"impure" => {
            if !path.is_empty() {
                return Err(unexpected_path());
            }
            Ok(Output::Impure(method, algo))
        }
        b"" => {
            if !path.is_empty() {
                return Err(unexpected_path());
            }
            Ok(Output::Floating(method, algo))
        }
        _ => {
            absolute(&path)?;
            let digits = utf8(hash, "an output hash")?;
            let hash = Hash::parse_digits(algo, &digits)
                .map_err(|e| DerivationError::Invalid(format!("output hash: {e}")))?;
            Ok(Output::Fixed(method, hash))
        }
    }
}

/// Parses the text of the derivation called `name` (its store path's name without `.drv`).
pub fn parse(text: &[u8], name: &str, store_dir: &StoreDir) -> Result<Derivation, DerivationError> {
    let mut r = Reader { text, at: 0 };
    r.expect("Derive([")?;
    let mut outputs = BTreeMap::new();
    while !r.end_of_list()? {
        r.expect("(")?;
        let id = r.string()?;
        r.expect(",")?;
        let path = r.string()?;
        r.expect(",")?;
        let algo = r.string()?;
        r.expect(",")?;
        let hash = r.string()?;
        r.expect(")")?;
        let id = utf8(id, "an output name")?;
        let out = output(store_dir, path, algo, hash)?;
        outputs.entry(id).or_insert(out);
    }
    r.expect(",[")?;
    let mut input_drvs = BTreeMap::new();
    while !r.end_of_list()? {
        r.expect("(")?;
        let p = r.path()?;
        r.expect(",[")?;
        let wanted = r.strings(false)?;
        r.expect(")")?;
        input_drvs.insert(store_path(store_dir, p)?, wanted);
    }
    r.expect(",[")?;
    let input_srcs = r
        .strings(true)?
        .into_iter()
        .map(|p| store_path(store_dir, p))
        .collect::<Result<BTreeSet<_>, _>>()?;
    r.expect(",")?;
    let platform = r.string()?;
    r.expect(",")?;
    let builder = r.string()?;
    r.expect(",[")?;
    let mut args = Vec::new();
    while !r.end_of_list()? {
        args.push(r.string()?);
    }
    r.expect(",[")?;
    let mut env = BTreeMap::new();
    while !r.end_of_list()? {
        r.expect("(")?;
        let k = r.string()?;
        r.expect(",")?;
        let v = r.string()?;
        r.expect(")")?;
        env.insert(k, v);
    }
    r.expect(")")?;
    Ok(Derivation {
        name: name.to_string(),
        outputs,
        input_drvs,
        input_srcs,
        platform,
        builder,
        args,
        env,
    })
}

fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Nix's `printUnquotedString`: between quotes, nothing escaped.
fn raw(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

fn list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

/// Nix's `Derivation::unparse`: with `mask_outputs`, output paths and the environment
/// variables named after outputs are empty; `inputs`, when given, replaces the input
/// derivations (Nix's `actualInputs`: derivation hashes in base 16 to output names).
pub fn unparse(
    drv: &Derivation,
    store_dir: &StoreDir,
    mask_outputs: bool,
    inputs: Option<&BTreeMap<String, BTreeSet<Vec<u8>>>>,
) -> Result<Vec<u8>, DerivationError> {
    let mut s = b"Derive(".to_vec();
    let mut outs = Vec::new();
    for (id, o) in &drv.outputs {
        let (path, algo, hash) = match o {
            Output::InputAddressed(p) => (store_dir.display(p), String::new(), String::new()),
            Output::Fixed(m, h) => (
                store_dir.display(&drv.fixed_output_path(store_dir, id, *m, h)?),
                super::method_algo(*m, h.algo()),
                crate::hash::to_hex(h.digest()),
            ),
            Output::Floating(m, a) => (String::new(), super::method_algo(*m, *a), String::new()),
            Output::Deferred => Default::default(),
            Output::Impure(m, a) => (String::new(), super::method_algo(*m, *a), "impure".into()),
        };
        let path = if mask_outputs { String::new() } else { path };
        outs.push((id, path, algo, hash));
    }
    list(&mut s, outs, |s, (id, path, algo, hash)| {
        s.push(b'(');
        raw(s, id.as_bytes());
        for f in [path, algo, hash] {
            s.push(b',');
            raw(s, f.as_bytes());
        }
        s.push(b')');
    });
    s.push(b',');
    let wanted = |s: &mut Vec<u8>, key: &[u8], names: &BTreeSet<Vec<u8>>| {
        s.push(b'(');
        raw(s, key);
        s.push(b',');
        list(s, names, |s, n| raw(s, n));
        s.push(b')');
    };
    match inputs {
        Some(inputs) => list(&mut s, inputs, |s, (k, v)| wanted(s, k.as_bytes(), v)),
        None => list(&mut s, &drv.input_drvs, |s, (k, v)| {
            wanted(s, store_dir.display(k).as_bytes(), v)
        }),
    }
    s.push(b',');
    let srcs: BTreeSet<String> = drv
        .input_srcs
        .iter()
        .map(|p| store_dir.display(p))
        .collect();
    list(&mut s, &srcs, |s, p| raw(s, p.as_bytes()));
    s.push(b',');
    raw(&mut s, &drv.platform);
    s.push(b',');
    quoted(&mut s, &drv.builder);
    s.push(b',');
    list(&mut s, &drv.args, |s, a| quoted(s, a));
    s.push(b',');
    list(&mut s, &drv.env, |s, (k, v)| {
        s.push(b'(');
        quoted(s, k);
        s.push(b',');
        let masked =
            mask_outputs && std::str::from_utf8(k).is_ok_and(|k| drv.outputs.contains_key(k));
        quoted(s, if masked { &[][..] } else { v.as_slice() });
        s.push(b')');
    });
    s.push(b')');
    Ok(s)
}
