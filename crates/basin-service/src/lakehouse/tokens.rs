//! Access tokens for `basin serve`: random secrets shown once, stored as SHA-256 hashes, each
//! with a role (reader < writer < admin) or grants of its own, and the `[[grants]]` that
//! basin.toml declares for its name.

use std::sync::Arc;

use basin_catalog::{Access, Grant, Grants, TokenRecord};
use basin_core::{Error, Result};
use sha2::{Digest, Sha256};

use crate::Lakehouse;

/// What a token may do: readers read, writers also change data, admins also manage tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "reader" => Ok(Self::Reader),
            "writer" => Ok(Self::Writer),
            "admin" => Ok(Self::Admin),
            other => Err(Error::invalid(format!("`{other}` is not a role"))
                .with_hint("use reader, writer or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
        }
    }

    /// The grants a role stands for: read everything; read and change everything; admin.
    pub fn grants(self) -> Vec<Grant> {
        match self {
            Self::Reader => vec![Grant::everything(Access::Read)],
            Self::Writer => vec![Grant::everything(Access::Write)],
            Self::Admin => vec![Grant::admin()],
        }
    }

    /// The least role whose routes `access` needs.
    fn of(access: Access) -> Self {
        match access {
            Access::Read => Self::Reader,
            Access::Write => Self::Writer,
            Access::Admin => Self::Admin,
        }
    }
}

/// Who a token is: its name, the role its routes are checked against, and its grants.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token: TokenRecord,
    pub role: Role,
    pub grants: Arc<Grants>,
    /// Signed in with an issuer's token (`[auth.oidc]`), not a Basin token.
    pub signed_in: bool,
    /// When a sign-in token stops being accepted (ms); `None` for a Basin token.
    pub expires_at_ms: Option<i64>,
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Access tokens for `basin serve` (`basin token`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::tokens`].
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// Access tokens: see [`Tokens`].
    pub fn tokens(&self) -> Tokens<'_> {
        Tokens { lake: self }
    }
}

impl Tokens<'_> {
    /// How the console signs people in with `[auth.oidc]`'s issuer, if configured.
    pub fn console_sign_in(&self) -> Option<&crate::config::ConsoleSignIn> {
        self.lake
            .oidc
            .as_deref()
            .and_then(super::oidc::Oidc::console)
    }

    /// The console's sign-in: trades an authorization code for a token Basin accepts
    /// ([`super::oidc::Oidc::exchange`]), recorded in the audit log either way.
    pub async fn sign_in(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<super::oidc::SignedIn> {
        let Some(oidc) = &self.lake.oidc else {
            return Err(Error::not_found("this server has no sign-in issuer")
                .with_hint("configure [auth.oidc] in basin.toml, or paste a Basin token"));
        };
        let signed = oidc.exchange(code, verifier, redirect_uri).await;
        match &signed {
            Ok(who) => {
                let actor = basin_catalog::actor::Actor::new(who.subject.clone(), "console");
                let audit = self.lake.audit();
                basin_catalog::actor::scope(actor, audit.record("sign in", "", "ok", "")).await;
            }
            Err(e) => {
                let audit = self.lake.audit();
                audit
                    .record_refused_secret("console", "sign in", "refused", &e.message)
                    .await;
            }
        }
        signed
    }

    /// A new token with `role`, or with `grants` of its own (whose highest access is then its
    /// role); the secret is returned once and only its hash is kept.
    pub async fn create(
        &self,
        name: &str,
        role: Option<Role>,
        grants: &[Grant],
    ) -> Result<(TokenRecord, String)> {
        let role = match (role, grants.iter().map(|g| g.access).max()) {
            (Some(_), Some(_)) => {
                return Err(
                    Error::invalid("a token has a role or grants, not both").with_hint(
                        "use --role for everything a role allows, or --grant (repeated) for less",
                    ),
                );
            }
            (Some(role), None) => role,
            (None, Some(highest)) => Role::of(highest),
            (None, None) => {
                return Err(Error::invalid("a token needs a role or grants").with_hint(
                    "e.g. --role reader, or --grant read:sales.* --grant write:sandbox.*@dev/*",
                ));
            }
        };
        // A name is who a token is (grants, authorship, owned functions): one token each.
        if !name.is_empty() && self.list().await?.iter().any(|t| t.name == name) {
            return Err(Error::new(
                basin_core::ErrorKind::AlreadyExists,
                format!("a token named `{name}` exists"),
            )
            .with_hint(
                "revoke it first (basin token ls, basin token revoke ID), or pick another name",
            ));
        }
        let secret = format!(
            "basin_{}{}",
            basin_core::ids::random(),
            basin_core::ids::random()
        );
        let record = TokenRecord {
            id: basin_core::ids::random()[..8].to_string(),
            name: name.to_string(),
            role: role.as_str().to_string(),
            hash: hash(&secret),
            created_at_ms: chrono::Utc::now().timestamp_millis(),
            grants: grants.iter().map(Grant::display).collect(),
        };
        self.lake.catalog().store().create_token(&record).await?;
        Ok((record, secret))
    }

    pub async fn list(&self) -> Result<Vec<TokenRecord>> {
        self.lake.catalog().store().tokens().await
    }

    pub async fn revoke(&self, id: &str) -> Result<()> {
        self.lake.catalog().store().delete_token(id).await
    }

    /// The principal a secret belongs to; `None` for an unknown secret. Its grants are the
    /// token's own (or its role's) and the `[[grants]]` declared for its name; its role, for
    /// the doors' per-route check, is the highest access among them.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        if let Some(oidc) = &self.lake.oidc
            && super::oidc::is_jwt(secret)
        {
            return self.signed_in(oidc, secret).await.map(Some);
        }
        let Some(token) = self
            .lake
            .catalog()
            .store()
            .token_by_hash(&hash(secret))
            .await?
        else {
            return Ok(None);
        };
        let mut grants = if token.grants.is_empty() {
            Role::parse(&token.role)?.grants()
        } else {
            token
                .grants
                .iter()
                .map(|g| Grant::parse(g))
                .collect::<Result<Vec<_>>>()?
        };
        grants.extend(self.declared_for(&[&token.name]));
        let grants = Grants::new(grants);
        let role = grants.highest().map_or(Role::Reader, Role::of);
        Ok(Some(Principal {
            token,
            role,
            grants: Arc::new(grants),
            signed_in: false,
            expires_at_ms: None,
        }))
    }

    /// The `[[grants]]` declared `to` any of `names`.
    fn declared_for<'n>(&self, names: &'n [&'n str]) -> impl Iterator<Item = Grant> + 'n
    where
        Self: 'n,
    {
        self.lake
            .settings()
            .grants
            .iter()
            .filter(|d| names.contains(&d.to.as_str()))
            .flat_map(|d| d.grants.iter().cloned())
    }

    /// The principal a verified sign-in token names: its subject, with the `[[grants]]`
    /// declared for the subject or any of its groups (none: it may do nothing).
    async fn signed_in(&self, oidc: &super::oidc::Oidc, jwt: &str) -> Result<Principal> {
        let identity = oidc.verify(jwt).await?;
        let mut names = vec![identity.subject.as_str()];
        names.extend(identity.groups.iter().map(String::as_str));
        let grants = Grants::new(self.declared_for(&names).collect());
        let role = grants.highest().map(Role::of);
        let token = TokenRecord {
            id: format!("oidc:{}", identity.subject),
            name: identity.subject.clone(),
            role: role.map_or("none", Role::as_str).to_string(),
            hash: String::new(),
            created_at_ms: 0,
            grants: grants.grants.iter().map(Grant::display).collect(),
        };
        Ok(Principal {
            token,
            role: role.unwrap_or(Role::Reader),
            grants: Arc::new(grants),
            signed_in: true,
            expires_at_ms: Some(identity.expires_at_ms),
        })
    }
}
