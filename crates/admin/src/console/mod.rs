//! The operator console's own pages, `/console/operator`: operators sign
//! in (and out) here; the licenses with their usage, a license's page (edit,
//! suspend, tokens, app keys, delete, and the sections other capabilities
//! add), the operators and the audit log. The session check, the layout and
//! the signed-in operator are the core shell's (`console::OperatorViewer`).
//!
//! Every form calls the same acts as the admin API, so each change is in
//! the audit log with the operator and their address.

mod licenses;
mod people;
mod signin;

use std::time::Duration;

use axum::Router;
use axum::http::request::Parts;
use relayhub_core::console::{OperatorViewer, Pages};
use relayhub_core::operators::OperatorAuth;

use crate::Admin;
use crate::acts::Acts;

/// How long an operator's console session lasts: a working shift.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The operator console's pages: sign-in for anyone, the rest behind the
/// shell's operator session check.
pub(crate) fn pages(admin: Admin) -> Pages {
    let operator = Router::new().merge(licenses::routes()).merge(people::routes()).merge(signin::sign_out_routes());
    let mut pages = Pages::new(Vec::new(), Router::new());
    pages.public = signin::routes().with_state(admin.clone());
    pages.operator = operator.with_state(admin);
    pages
}

impl Admin {
    /// The acts, done by the signed-in operator from the request's client.
    fn console_acts(&self, viewer: &OperatorViewer, parts: &Parts) -> Acts {
        self.acts(OperatorAuth(viewer.operator.clone()), parts)
    }
}
