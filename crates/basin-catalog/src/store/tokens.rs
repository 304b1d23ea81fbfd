//! Access tokens for `basin serve`: stored by the hash of their secret, never the secret.

use async_trait::async_trait;

use crate::model::TokenRecord;
use basin_core::Result;

#[async_trait]
pub trait Tokens: Send + Sync {
    /// Stores a new access token (its hash, never the secret).
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;

    async fn tokens(&self) -> Result<Vec<TokenRecord>>;

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// Fails with `NotFound` if there is no such token.
    async fn delete_token(&self, id: &str) -> Result<()>;
}
