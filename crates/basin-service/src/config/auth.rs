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
//! # The console's "Sign in" (authorization code with PKCE; a public client, no secret):
//! client_id = "basin-console"
//! authorization_url = "https://login.example.com/realms/data/protocol/openid-connect/auth"
//! token_url = "https://login.example.com/realms/data/protocol/openid-connect/token"
//! scopes = ["openid"]        # default
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
    pub client_id: Option<String>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// How the console signs people in with the issuer: the authorization-code flow with PKCE,
/// as a public client (no secret; the code verifier proves the request is the console's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConsoleSignIn {
    pub client_id: String,
    pub authorization_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
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
    /// The console's sign-in, when `client_id` and the two URLs are given.
    pub console: Option<ConsoleSignIn>,
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
    http_url(&at("jwks_url"), &oidc.jwks_url, "jwks_uri")?;
    let console = match (&oidc.client_id, &oidc.authorization_url, &oidc.token_url) {
        (None, None, None) => None,
        (Some(client_id), Some(authorization_url), Some(token_url)) => {
            http_url(
                &at("authorization_url"),
                authorization_url,
                "authorization_endpoint",
            )?;
            http_url(&at("token_url"), token_url, "token_endpoint")?;
            Some(ConsoleSignIn {
                client_id: client_id.clone(),
                authorization_url: authorization_url.clone(),
                token_url: token_url.clone(),
                scopes: oidc.scopes.clone().unwrap_or_else(|| vec!["openid".into()]),
            })
        }
        _ => {
            return Err(Error::invalid(format!(
                "{}: client_id, authorization_url and token_url go together",
                at("client_id")
            ))
            .with_hint("give all three for the console's Sign in, or none"));
        }
    };
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
        console,
    }))
}

/// Refuses a value that is not an http(s) URL, naming the issuer's metadata field to copy.
fn http_url(at: &str, value: &str, field: &str) -> Result<()> {
    let hint = || format!("the issuer's `{field}`, from its /.well-known/openid-configuration");
    let url = reqwest::Url::parse(value).map_err(|e| {
        Error::invalid(format!("{at}: `{value}` is not a URL: {e}")).with_hint(hint())
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Error::invalid(format!("{at}: `{url}` is not http(s)")).with_hint(hint()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> AuthSection {
        toml::from_str(&format!(
            "[oidc]\nissuer = \"https://id\"\naudience = \"basin\"\njwks_url = \"https://id/keys\"\n{extra}"
        ))
        .expect("toml")
    }

    #[test]
    fn the_console_sign_in_needs_its_three_settings_together() {
        let path = Path::new("basin.toml");
        let none = resolve(&section(""), path).unwrap().unwrap();
        assert_eq!(none.console, None);
        let all = resolve(
            &section("client_id = \"c\"\nauthorization_url = \"https://id/auth\"\ntoken_url = \"https://id/token\""),
            path,
        )
        .unwrap()
        .unwrap();
        let console = all.console.expect("sign-in");
        assert_eq!(
            (console.client_id.as_str(), console.scopes),
            ("c", vec!["openid".to_string()])
        );
        let half = resolve(&section("client_id = \"c\""), path).unwrap_err();
        assert!(half.message.contains("go together"), "{half}");
        let bad = section(
            "client_id = \"c\"\nauthorization_url = \"ftp://id\"\ntoken_url = \"https://id/token\"",
        );
        let bad = resolve(&bad, path).unwrap_err();
        assert!(bad.message.contains("authorization_url"), "{bad}");
    }
}
