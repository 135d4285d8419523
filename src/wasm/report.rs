//! A verification's report kept in wasm memory (`verifyCacheReport`): its verdict and counts at
//! once, its renderings in pieces ([`crate::cache::verify::pieces`]), so that JS never holds a
//! report of millions of problems as objects or as one string.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::{junit_option, rendering, to_value, JsResult};
use crate::cache::verify::pieces::Pieces;
use crate::cache::verify::Report;

#[wasm_bindgen]
pub struct VerifyReport {
    report: Rc<Report>,
}

impl VerifyReport {
    pub(super) fn new(report: Report) -> VerifyReport {
        VerifyReport {
            report: Rc::new(report),
        }
    }
}

#[wasm_bindgen]
impl VerifyReport {
    #[wasm_bindgen(getter)]
    pub fn ok(&self) -> bool {
        self.report.ok
    }

    #[wasm_bindgen(getter)]
    pub fn paths(&self) -> f64 {
        self.report.paths as f64
    }

    #[wasm_bindgen(getter, js_name = checkedBytes)]
    pub fn checked_bytes(&self) -> f64 {
        self.report.checked_bytes as f64
    }

    /// Problems and warnings found, listed or not.
    #[wasm_bindgen(getter, js_name = problemCount)]
    pub fn problem_count(&self) -> f64 {
        self.report.problems_found() as f64
    }

    /// Problems and warnings found beyond the limit and not listed.
    #[wasm_bindgen(getter, js_name = omittedCount)]
    pub fn omitted_count(&self) -> f64 {
        self.report.problems_omitted() as f64
    }

    /// The exit code `nar-tool verify` gives for it.
    #[wasm_bindgen(js_name = exitCode)]
    pub fn exit_code(&self) -> u8 {
        self.report.exit_code()
    }

    /// The whole report as `verifyCache` gives it (every problem an object).
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> JsResult<JsValue> {
        to_value(&*self.report)
    }

    /// A rendering (as `renderReport` names them) in pieces: `next()` gives each, then
    /// `undefined`; joined, they are what `renderReport` gives.
    pub fn render(
        &self,
        cache: String,
        format: Option<String>,
        junit: JsValue,
    ) -> JsResult<ReportPieces> {
        let junit = junit_option(junit)?;
        let how = rendering(format.as_deref(), &junit)?;
        Ok(ReportPieces {
            pieces: Pieces::new(&self.report, &cache, how),
            report: Rc::clone(&self.report),
            cache,
        })
    }
}

/// The pieces of one rendering of a [`VerifyReport`].
#[wasm_bindgen]
pub struct ReportPieces {
    report: Rc<Report>,
    cache: String,
    pieces: Pieces,
}

#[wasm_bindgen]
impl ReportPieces {
    /// The next piece (about 64 KiB), `undefined` after the last.
    pub fn next(&mut self) -> Option<String> {
        self.pieces.next_piece(&self.report, &self.cache)
    }
}
