//! Verifying sign-in tokens from an OpenID Connect issuer (`[auth.oidc]`): the JWT's
//! signature by the issuer key its `kid` names (fetched from the JWKS URL, cached, fetched
//! again for an unknown `kid` at most every [`REFETCH_AFTER`]), its `iss`, `aud`, `exp` and
//! `nbf` (within `leeway`), and an asymmetric algorithm only: `none` and the HMAC ones
//! (whose key would be the public one) are refused.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use crate::config::{ConsoleSignIn, OidcSettings};
use basin_core::{Error, ErrorKind, Result};

/// The least time between two fetches of the issuer's keys for an unknown `kid`, so a flood of
/// made-up `kid`s cannot make Basin hammer the issuer.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// Who a verified token says signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub groups: Vec<String>,
    /// When the token stops being accepted (its `exp`, plus the leeway), in ms.
    pub expires_at_ms: i64,
}

/// What the console's sign-in gets for an authorization code: the token Basin accepts (the
/// first of the issuer's ID and access tokens that verifies) and who it names.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SignedIn {
    pub token: String,
    pub subject: String,
    pub expires_at_ms: i64,
}

/// A verifier for one issuer, with its keys cached.
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: Mutex<Option<(Instant, JwkSet)>>,
}

/// Whether `secret` looks like a JWT (three base64url parts, a JSON header) rather than a
/// Basin token.
pub fn is_jwt(secret: &str) -> bool {
    secret.starts_with("eyJ") && secret.split('.').count() == 3
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Self> {
        basin_table::install_crypto_provider();
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::internal(format!("cannot start an HTTP client: {e}")))?;
        Ok(Self {
            settings,
            http,
            keys: Mutex::new(None),
        })
    }

    /// How the console signs people in, if configured.
    pub fn console(&self) -> Option<&ConsoleSignIn> {
        self.settings.console.as_ref()
    }

    /// Trades the console's authorization `code` (with the PKCE `verifier` it made and the
    /// `redirect_uri` it sent) at the issuer's token endpoint, and verifies what comes back.
    /// On the server, not in the page: the console fetches nothing but Basin, and a public
    /// client's exchange needs no secret either way.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<SignedIn> {
        let console = self.console().ok_or_else(|| {
            Error::not_found("this server has no console sign-in")
                .with_hint("set client_id, authorization_url and token_url under [auth.oidc]")
        })?;
        let url = &console.token_url;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", console.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        let response = self
            .http
            .post(url)
            .form(&form)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| {
                Error::io_with(format!("cannot reach the issuer's token endpoint {url}"), e)
            })?;
        let status = response.status();
        let unreadable = |e: &dyn std::fmt::Display| {
            Error::io(format!(
                "the issuer's token endpoint {url} answered no JSON: {e}"
            ))
        };
        let bytes = response.bytes().await.map_err(|e| unreadable(&e))?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
        if !status.is_success() {
            let why = ["error_description", "error"]
                .iter()
                .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
                .unwrap_or("no reason given");
            return Err(refused(format!(
                "the issuer did not take the sign-in code: {why}"
            )));
        }
        let mut last = refused("the issuer's token endpoint answered no token".into());
        for field in ["id_token", "access_token"] {
            let Some(token) = body.get(field).and_then(|v| v.as_str()) else {
                continue;
            };
            match self.verify(token).await {
                Ok(identity) => {
                    return Ok(SignedIn {
                        token: token.to_string(),
                        subject: identity.subject,
                        expires_at_ms: identity.expires_at_ms,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The identity a valid token names; `Unauthorized`-like refusals (`InvalidInput`) name
    /// what was wrong, an unreachable issuer is `Io`.
    pub async fn verify(&self, token: &str) -> Result<Identity> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refused(format!("the token's header cannot be read: {e}")))?;
        if !asymmetric(header.alg) {
            return Err(refused(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| refused("the token names no key (`kid`)".into()))?;
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| refused(format!("the issuer's key `{kid}` cannot be used: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| refused(format!("the token is not valid: {e}")))?
            .claims;
        let subject = claims
            .get(&self.settings.principal_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                refused(format!(
                    "the token has no `{}` claim to name who signed in",
                    self.settings.principal_claim
                ))
            })?
            .to_string();
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0);
        let leeway = i64::try_from(self.settings.leeway.as_secs()).unwrap_or(i64::MAX / 2000);
        let expires_at_ms = exp.saturating_add(leeway).saturating_mul(1000);
        Ok(Identity {
            subject,
            groups,
            expires_at_ms,
        })
    }

    /// The issuer's key `kid`: from the cache, or fetched (again) when unknown.
    async fn key(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk> {
        let mut keys = self.keys.lock().await;
        if let Some((_, set)) = keys.as_ref()
            && let Some(jwk) = set.find(kid)
        {
            return Ok(jwk.clone());
        }
        let stale = keys
            .as_ref()
            .is_none_or(|(fetched, _)| fetched.elapsed() >= REFETCH_AFTER);
        if stale {
            let set = self.fetch().await?;
            *keys = Some((Instant::now(), set));
        }
        keys.as_ref()
            .and_then(|(_, set)| set.find(kid).cloned())
            .ok_or_else(|| refused(format!("the issuer has no key `{kid}`")))
    }

    async fn fetch(&self) -> Result<JwkSet> {
        let url = &self.settings.jwks_url;
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| Error::io_with(format!("cannot fetch the issuer's keys from {url}"), e))?;
        if !response.status().is_success() {
            return Err(Error::io(format!(
                "cannot fetch the issuer's keys from {url}: it answered {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::io_with(format!("the issuer's keys at {url} broke off"), e))?;
        serde_json::from_slice::<JwkSet>(&body)
            .map_err(|e| Error::io_with(format!("the issuer's keys at {url} are not a JWKS"), e))
    }
}

fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn refused(why: String) -> Error {
    Error::new(ErrorKind::InvalidInput, why)
        .with_hint("sign in again with the issuer configured in [auth.oidc], or use a Basin token")
}
