//! Verifying sign-in tokens from an OpenID Connect issuer (`[auth.oidc]`): the JWT's
//! signature by the issuer key its `kid` names (fetched from the JWKS URL, cached, fetched
//! again for an unknown `kid` at most every [`REFETCH_AFTER`]), its `iss`, `aud`, `exp` and
//! `nbf` (within `leeway`), and an asymmetric algorithm only: `none` and the HMAC ones
//! (whose key would be the public one) are refused.
//!
//! Made-up `kid`s cost a stranger nothing: a known key is read without waiting for any fetch,
//! one fetch runs at a time (the tokens that wait for it look again once it ends, and fetch
//! nothing more), and a fetch that failed counts as one for the wait before the next.

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
    keys: std::sync::Mutex<Keys>,
    /// Held while the keys are fetched: one fetch at a time.
    fetching: Mutex<()>,
}

/// The issuer's keys as last fetched, and when a fetch was last tried.
#[derive(Debug, Default)]
struct Keys {
    set: Option<JwkSet>,
    tried: Option<Instant>,
    /// Why the last fetch failed, if it did.
    failed: Option<String>,
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
            keys: std::sync::Mutex::default(),
            fetching: Mutex::new(()),
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
        if let Some(jwk) = self.cached(kid) {
            return Ok(jwk);
        }
        let _one = self.fetching.lock().await;
        // A fetch that ended while this waited may have brought it.
        if let Some(jwk) = self.cached(kid) {
            return Ok(jwk);
        }
        let due = {
            let mut keys = self.keys.lock().expect("oidc keys");
            let due = keys.tried.is_none_or(|at| at.elapsed() >= REFETCH_AFTER);
            if due {
                keys.tried = Some(Instant::now());
            }
            due
        };
        if due {
            let fetched = self.fetch().await;
            let mut keys = self.keys.lock().expect("oidc keys");
            match fetched {
                Ok(set) => (keys.set, keys.failed) = (Some(set), None),
                Err(e) => {
                    keys.failed = Some(e.message.clone());
                    return Err(e);
                }
            }
        }
        if let Some(jwk) = self.cached(kid) {
            return Ok(jwk);
        }
        let keys = self.keys.lock().expect("oidc keys");
        match (&keys.set, &keys.failed) {
            (None, Some(why)) => Err(Error::io(format!(
                "the issuer's keys could not be fetched: {why}; Basin tries again at most every \
                 {} s",
                REFETCH_AFTER.as_secs()
            ))),
            _ => Err(refused(format!("the issuer has no key `{kid}`"))),
        }
    }

    /// The issuer's key `kid`, if the keys last fetched hold it.
    fn cached(&self, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
        let keys = self.keys.lock().expect("oidc keys");
        keys.set.as_ref()?.find(kid).cloned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An issuer whose JWKS URL answers `status` and no keys, slowly, counting its requests.
    async fn issuer(status: u16) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let body = r#"{"keys": []}"#;
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    fn verifier(jwks_url: String) -> Arc<Oidc> {
        Arc::new(
            Oidc::new(OidcSettings {
                issuer: "https://issuer.example".into(),
                audience: "basin".into(),
                jwks_url,
                principal_claim: "sub".into(),
                groups_claim: "groups".into(),
                leeway: Duration::from_secs(5),
                console: None,
            })
            .unwrap(),
        )
    }

    /// A token whose header names `kid` (its claims and signature are never reached).
    fn token(kid: &str) -> String {
        let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
        format!("{}.e30.c2ln", base64url(header.as_bytes()))
    }

    /// Base64url without padding (the test's only use of it; no crate for it here).
    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[tokio::test]
    async fn made_up_keys_share_one_fetch_and_then_wait_for_none() {
        assert_eq!(
            [base64url(b"M"), base64url(b"Ma"), base64url(b"Man")],
            ["TQ", "TWE", "TWFu"]
        );
        let (url, hits) = issuer(200).await;
        let oidc = verifier(url);
        let tries: Vec<_> = (0..12)
            .map(|i| {
                let oidc = oidc.clone();
                tokio::spawn(async move { oidc.verify(&token(&format!("made-up-{i}"))).await })
            })
            .collect();
        for tried in tries {
            let e = tried.await.unwrap().unwrap_err();
            assert!(e.message.contains("the issuer has no key"), "{e}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Within the wait before the next fetch: refused at once, fetching nothing.
        let started = Instant::now();
        assert!(oidc.verify(&token("another")).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(200));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_counts_for_the_wait_and_says_why() {
        let (url, hits) = issuer(500).await;
        let oidc = verifier(url);
        let first = oidc.verify(&token("a")).await.unwrap_err();
        assert_eq!(first.kind(), ErrorKind::Io, "{first}");
        let second = oidc.verify(&token("b")).await.unwrap_err();
        assert_eq!(second.kind(), ErrorKind::Io, "{second}");
        assert!(second.message.contains("could not be fetched"), "{second}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
