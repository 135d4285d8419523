//! A verification's paths shared with other wasm instances (Node's or a browser's workers),
//! through a JS object the host makes: the claims go through its shared counter, the checks
//! travel as text ([`crate::cache::verify::share`]).

use std::ops::Range;

use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::cache::verify::share::{Alone, PathShare};

/// The host's share object:
/// `{ begin(names), claim() → [start, end], arrived() → string[], rest() → Promise<string[]>,
/// send(text) }` (a leader uses the first four, a helper `claim` and `send`); without one, a
/// thread alone.
pub(super) struct JsShare {
    host: Option<Host>,
    alone: Alone,
}

struct Host {
    share: JsValue,
    begin: Option<Function>,
    claim: Function,
    arrived: Option<Function>,
    rest: Option<Function>,
    send: Option<Function>,
}

/// `obj.name` if it is a function.
fn method(obj: &JsValue, name: &str) -> Option<Function> {
    js_sys::Reflect::get(obj, &name.into())
        .ok()?
        .dyn_into::<Function>()
        .ok()
}

/// Strings of an array (anything else in it, or a value that is not an array: none).
fn strings(v: JsValue) -> Vec<String> {
    match v.dyn_into::<Array>() {
        Ok(a) => a.iter().filter_map(|s| s.as_string()).collect(),
        Err(_) => Vec::new(),
    }
}

impl JsShare {
    /// `share` as a share object (it must at least have `claim`), or a thread alone.
    pub(super) fn new(share: &JsValue) -> Result<JsShare, String> {
        let host = if share.is_undefined() || share.is_null() {
            None
        } else {
            let claim = method(share, "claim").ok_or("share: expected an object with claim()")?;
            Some(Host {
                begin: method(share, "begin"),
                claim,
                arrived: method(share, "arrived"),
                rest: method(share, "rest"),
                send: method(share, "send"),
                share: share.clone(),
            })
        };
        Ok(JsShare {
            host,
            alone: Alone::new(),
        })
    }

    /// Hands a helper's text of checks to the host.
    pub(super) fn send(&self, text: String) {
        if let Some(Host {
            share,
            send: Some(f),
            ..
        }) = &self.host
        {
            let _ = f.call1(share, &text.into());
        }
    }
}

impl PathShare for JsShare {
    fn begin(&self, names: &[String]) {
        self.alone.begin(names);
        if let Some(Host {
            share,
            begin: Some(f),
            ..
        }) = &self.host
        {
            let list: Array = names.iter().map(|n| JsValue::from_str(n)).collect();
            let _ = f.call1(share, &list);
        }
    }

    fn claim(&self) -> Range<usize> {
        let Some(host) = &self.host else {
            return self.alone.claim();
        };
        let Ok(range) = host.claim.call0(&host.share) else {
            return 0..0;
        };
        let bound = |i: u32| {
            js_sys::Reflect::get_u32(&range, i)
                .ok()
                .and_then(|v| v.as_f64())
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as usize)
        };
        match (bound(0), bound(1)) {
            (Some(start), Some(end)) if start < end => start..end,
            _ => 0..0,
        }
    }

    fn arrived(&self) -> Vec<String> {
        match &self.host {
            Some(Host {
                share,
                arrived: Some(f),
                ..
            }) => f.call0(share).map(strings).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    async fn rest(&self) -> Vec<String> {
        let Some(Host {
            share,
            rest: Some(f),
            ..
        }) = &self.host
        else {
            return Vec::new();
        };
        match f.call0(share) {
            // A host whose helpers failed gives what it has, or nothing: the leader then checks
            // the missing paths itself.
            Ok(v) => JsFuture::from(Promise::resolve(&v))
                .await
                .map(strings)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}
