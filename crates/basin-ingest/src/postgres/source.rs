//! A Postgres source as Basin reaches it, resolved from `[sources.NAME]`.

/// A Postgres source, resolved from `[sources.NAME]` (the password read from its variable).
#[derive(Clone)]
pub struct PgSource {
    /// The source's name in basin.toml, for messages.
    pub name: String,
    /// `postgres://USER@HOST:PORT/DATABASE`, without a password.
    pub url: String,
    pub password: Option<String>,
    /// The variable the password came from, for hints.
    pub password_env: Option<String>,
    /// `schema.table` (or `table`, in `public`); empty with `schema`.
    pub tables: Vec<String>,
    /// Every table of this schema.
    pub schema: Option<String>,
    /// The Basin namespace the tables go to, under their source names.
    pub namespace: String,
    /// Connections reading in parallel (ctid ranges of each table).
    pub readers: usize,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tables", &self.tables)
            .field("schema", &self.schema)
            .field("namespace", &self.namespace)
            .field("readers", &self.readers)
            .finish()
    }
}
