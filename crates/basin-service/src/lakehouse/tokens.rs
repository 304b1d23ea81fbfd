//! Access tokens for `basin serve`: random secrets shown once, stored as SHA-256 hashes, each
//! with a role (reader < writer < admin).

use basin_catalog::TokenRecord;
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
    /// A new token; the secret is returned once and only its hash is kept.
    pub async fn create(&self, name: &str, role: Role) -> Result<(TokenRecord, String)> {
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

    /// The token a secret belongs to, with its role; `None` for an unknown secret.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<(TokenRecord, Role)>> {
        let Some(record) = self
            .lake
            .catalog()
            .store()
            .token_by_hash(&hash(secret))
            .await?
        else {
            return Ok(None);
        };
        let role = Role::parse(&record.role)?;
        Ok(Some((record, role)))
    }
}
