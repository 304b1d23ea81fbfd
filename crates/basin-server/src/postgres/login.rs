//! Logging in to the Postgres door: a token as the password (unless `--no-auth`), then the
//! database name picks the ref the connection reads.

use std::fmt::Debug;

use basin_core::ErrorKind;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_DATABASE, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use datafusion_postgres::pgwire;

use super::backend::Handlers;
use super::errors::error_info;
use super::settings::{EXPIRES, GRANTS, READER, REF, TOKEN_ID, WHO};
use basin_catalog::actor::{self, Actor};

impl Handlers {
    /// The FATAL 28P01 for a password that names no principal, recorded in the audit log
    /// (within `[server] audit_refusals_per_minute`, `crate::refusals`).
    async fn refuse_login(&self, why: &str, hint: Option<String>) -> PgWireError {
        let lakehouse = &self.0.lakehouse;
        if self.0.refusals.recorded(lakehouse, "postgres").await {
            lakehouse
                .audit()
                .record_refused_secret("postgres", "login", "refused", why)
                .await;
        }
        let mut info = ErrorInfo::new(
            "FATAL".into(),
            "28P01".into(),
            format!("password authentication failed: {why}"),
        );
        info.hint = hint;
        PgWireError::UserError(Box::new(info))
    }

    /// Authentication passed: take a connection slot (one of those kept past
    /// `max_connections` only for an admin), pick the ref from the database name and say
    /// ready.
    async fn welcome<C>(&self, client: &mut C, admin: bool) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let wait = self.0.lakehouse.settings().server.handshake_timeout;
        seat(client, admin, wait).await?;
        let metadata = client.metadata();
        let user = metadata.get(METADATA_USER);
        let spec = match metadata.get(METADATA_DATABASE) {
            Some(db) if Some(db) != user && !matches!(db.as_str(), "postgres" | "basin") => {
                db.clone()
            }
            _ => "main".to_string(),
        };
        match self.0.lakehouse.resolve(Some(&spec)).await {
            Ok(_) => {}
            // The catalog failed, not the name: as any server-side failure (FATAL, as at login).
            Err(e) if e.kind() != ErrorKind::NotFound && e.kind() != ErrorKind::InvalidInput => {
                return Err(PgWireError::UserError(Box::new(error_info(e, "FATAL"))));
            }
            Err(e) => {
                let mut info = ErrorInfo::new(
                    "FATAL".into(),
                    "3D000".into(),
                    format!("database \"{spec}\" does not exist: {}", e.message),
                );
                // The ref's own hint says which was meant ("did you mean `main`?").
                info.hint = Some(match e.hint {
                    Some(hint) => format!(
                        "{hint} (the database name is a branch, tag or commit; list them with \
                     `basin branch ls`)"
                    ),
                    None => "the database name is a branch, tag or commit; list them with \
                         `basin branch ls`"
                        .into(),
                });
                return Err(PgWireError::UserError(Box::new(info)));
            }
        }
        client.metadata_mut().insert(REF.to_string(), spec);
        finish_authentication(client, &self.0.parameters).await
    }
}

/// Gives the connection a slot: a free one, else (for an admin) one of those kept past
/// `max_connections`, else the first freed within `[server] handshake_timeout`; with none,
/// ends it as Postgres does (`53300`, too_many_connections).
async fn seat<C: ClientInfo>(
    client: &mut C,
    admin: bool,
    wait: std::time::Duration,
) -> PgWireResult<()> {
    use super::connection::{Seated, Unseated};
    let Some(unseated) = client.session_extensions().get::<Unseated>() else {
        return Ok(()); // seated already
    };
    let Some(mut admitted) = unseated.0.lock().expect("slot").take() else {
        return Ok(());
    };
    let mut slot = admitted
        .take_general()
        .or_else(|| admin.then(|| admitted.take_reserved()).flatten());
    if slot.is_none() {
        slot = tokio::time::timeout(wait, admitted.wait(admin)).await.ok();
    }
    let Some(slot) = slot else {
        let mut info = ErrorInfo::new(
            "FATAL".into(),
            "53300".into(),
            "sorry, too many clients already: every connection slot is taken \
             (`[server] max_connections`; the ones left are kept for admin tokens)"
                .into(),
        );
        info.hint = Some("retry in a moment, or raise `[server] max_connections`".into());
        return Err(PgWireError::UserError(Box::new(info)));
    };
    client
        .session_extensions()
        .insert(Seated(std::sync::Mutex::new(admitted), slot));
    Ok(())
}

#[async_trait]
impl StartupHandler for Handlers {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                // The key a cancel request must name (sent once the login succeeds): a
                // random secret, so no client can cancel another's queries.
                let (pid, secret) = self.0.cancel_keys.generate(&*client);
                client.set_pid_and_secret_key(pid, secret);
                if self.0.open {
                    return self.welcome(client, true).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                use futures::SinkExt;
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) if !self.0.open => {
                let secret = password.into_password()?.password;
                match self.0.lakehouse.tokens().authenticate(&secret).await {
                    Ok(Some(principal)) => {
                        let (token, role) = (&principal.token, principal.role);
                        tracing::debug!(token = %token.id, role = role.as_str(), "postgres login");
                        let grants = serde_json::to_string(principal.grants.as_ref())
                            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                        let metadata = client.metadata_mut();
                        metadata.insert(WHO.to_string(), token.name.clone());
                        metadata.insert(READER.to_string(), token.id.clone());
                        // A Basin token is looked up again as the connection goes on (a
                        // revoked one ends it); a sign-in token ends it when it expires.
                        if !principal.signed_in {
                            metadata.insert(TOKEN_ID.to_string(), token.id.clone());
                        }
                        if let Some(at) = principal.expires_at_ms {
                            metadata.insert(EXPIRES.to_string(), at.to_string());
                        }
                        metadata.insert(GRANTS.to_string(), grants);
                        // The database it asked for is a ref: looked up with its grants.
                        let actor = Actor {
                            principal: Some(token.name.clone()),
                            token_id: Some(token.id.clone()),
                            door: "postgres",
                            bypass_protection: false,
                            grants: Some(principal.grants.clone()),
                        };
                        let admin = role == basin_service::Role::Admin;
                        actor::scope(actor, self.welcome(client, admin)).await?;
                    }
                    // An unknown token, or a sign-in token that does not hold up. FATAL:
                    // the connection ends, as for a wrong password (an ERROR would leave
                    // the client logged in without a token).
                    Ok(None) => {
                        let why = "the password is not a known Basin access token";
                        let hint =
                            "use a token from `basin token create --role reader` as the password";
                        return Err(self.refuse_login(why, Some(hint.into())).await);
                    }
                    Err(e) if e.kind() == basin_core::ErrorKind::InvalidInput => {
                        return Err(self.refuse_login(&e.message, e.hint.clone()).await);
                    }
                    Err(e) => {
                        return Err(PgWireError::UserError(Box::new(error_info(e, "FATAL"))));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
