//! `[auth.oidc]`: signing in with an OpenID Connect issuer's tokens. A bearer token (or a
//! Postgres password) that is a JWT is verified against the issuer's keys, and its subject and
//! groups pick the `[[grants]]` that apply.
//!
//! ```toml
//! [auth.oidc]
//! issuer = "https://login.example.com/realms/data"
//! audience = "basin"
//! jwks_url = "https://login.example.com/realms/data/protocol/openid-connect/certs"
//! principal_claim = "sub"    # default
//! groups_claim = "groups"    # default
//! leeway = "60s"             # clock skew allowed on exp/nbf (default)
//! ```

use std::path::Path;

use serde::Deserialize;

use super::DurationValue;
use crate::{Error, Result};

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub oidc: Option<OidcSection>,
}

/// `[auth.oidc]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub principal_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub leeway: Option<DurationValue>,
}

/// `[auth.oidc]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub principal_claim: String,
    pub groups_claim: String,
    pub leeway: std::time::Duration,
}

pub(crate) fn resolve(section: &AuthSection, path: &Path) -> Result<Option<OidcSettings>> {
    let Some(oidc) = &section.oidc else {
        return Ok(None);
    };
    let at = |key: &str| format!("{}: [auth.oidc] {key}", path.display());
    for (key, value) in [
        ("issuer", &oidc.issuer),
        ("audience", &oidc.audience),
        ("jwks_url", &oidc.jwks_url),
    ] {
        if value.trim().is_empty() {
            return Err(Error::invalid(format!("{} is empty", at(key))).with_hint(
                "give the issuer's URL, the audience its tokens name for Basin, and its JWKS URL",
            ));
        }
    }
    let url = reqwest::Url::parse(&oidc.jwks_url).map_err(|e| {
        Error::invalid(format!(
            "{}: `{}` is not a URL: {e}",
            at("jwks_url"),
            oidc.jwks_url
        ))
        .with_hint("the issuer's `jwks_uri`, from its /.well-known/openid-configuration")
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(
            Error::invalid(format!("{}: `{}` is not http(s)", at("jwks_url"), url))
                .with_hint("the issuer's `jwks_uri`, from its /.well-known/openid-configuration"),
        );
    }
    let leeway = match &oidc.leeway {
        Some(v) => v.limit(&at("leeway"))?.unwrap_or_default(),
        None => std::time::Duration::from_secs(60),
    };
    Ok(Some(OidcSettings {
        issuer: oidc.issuer.clone(),
        audience: oidc.audience.clone(),
        jwks_url: oidc.jwks_url.clone(),
        principal_claim: oidc.principal_claim.clone().unwrap_or_else(|| "sub".into()),
        groups_claim: oidc.groups_claim.clone().unwrap_or_else(|| "groups".into()),
        leeway,
    }))
}
