//! The Postgres door left out of this build (the `postgres-wire` feature off, as
//! `scripts/demo.sh`'s quick first build): `basin serve --pg-listen` fails saying so, before
//! anything is served.

use std::net::SocketAddr;
use std::sync::Arc;

use basin_core::{Error, Result};
use basin_service::Lakehouse;

use crate::metrics::Metrics;

/// A Postgres door this build cannot open.
pub(crate) enum Door {}

impl Door {
    pub(crate) fn addr(&self) -> Result<SocketAddr> {
        match *self {}
    }
}

/// Fails: this build has no Postgres door.
pub(crate) async fn bind(listen: SocketAddr) -> Result<Door> {
    Err(Error::invalid(format!(
        "cannot serve Postgres clients on {listen}: this basin was built without the Postgres \
         door (the `postgres-wire` feature)"
    ))
    .with_hint(
        "build with the default features (`cargo build --bin basin`) or install the wheel \
         (`pip install basin-lakehouse`); or leave out --pg-listen",
    ))
}

/// Never runs: no [`Door`] can be made.
pub(crate) async fn serve(
    door: Door,
    _lakehouse: Lakehouse,
    _metrics: Arc<Metrics>,
    _shared: crate::state::Shared,
    _open: bool,
    _tls: Option<tokio_rustls::TlsAcceptor>,
    _shutdown: impl std::future::Future<Output = ()>,
) {
    match door {}
}
