//! Iceberg REST: S3 remote signing (`POST /v1/aws/s3/sign`, the `S3SignRequest` of Iceberg's
//! AWS module). An engine that asked for it (`X-Iceberg-Access-Delegation: remote-signing`)
//! finds in a loaded table's config `s3.remote-signing-enabled` (Java) and `s3.signer`
//! (PyIceberg's fsspec FileIO); it then sends each S3 request it is about to make here and
//! gets it back signed with Basin's keys. So engines read and write an S3 warehouse without
//! keys of their own, and a token's role bounds what they may do there.
//!
//! What Basin signs (`check`), and nothing else: requests to the warehouse's endpoint and
//! bucket, for keys under the warehouse; reading an object (GET, HEAD) or listing under the
//! warehouse for a reader; writing an object (one PUT, or the parts of a multipart upload)
//! for a writer. A token with grants of its own (not an admin's or a grant on every table)
//! reaches only the files of the tables it may read or write, on any branch: those in a
//! folder Basin made for the table (`ns/name-UUID`) that a ref still holds the table in
//! (`Tables::folder_owner`). Never a delete (a table's files go with `basin gc`, which knows what commits
//! still read), a bulk delete (its keys are in a body the signer does not see), a copy from
//! another object, a change of ACL or lock, or a bucket operation: Basin's keys reach more
//! than the warehouse, and whoever holds a signature may use it for 15 minutes.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use basin_catalog::grants::Access;
use basin_service::{Lakehouse, Role};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::errors::{RestError, RestResult};
use super::request::Body;
use crate::auth::Caller;
use crate::state::AppState;
use scope::{addressed, check, to_sign};
use signer::signed;

mod scope;
mod signer;

/// The route, relative to the catalog's base: the default of both Java's and PyIceberg's
/// `s3.signer.endpoint`, so clients need no setting for it.
pub(super) const SIGN: &str = "/v1/aws/s3/sign";

/// What a client sends: the request it is about to make (Iceberg's `S3SignRequest`; its
/// `properties` and `body` are not needed).
#[derive(Deserialize)]
pub(super) struct S3SignRequest {
    uri: String,
    method: String,
    #[serde(default)]
    headers: HashMap<String, Vec<String>>,
}

/// Whether the client asked for remote signing (`X-Iceberg-Access-Delegation`, a comma
/// separated list of `vended-credentials` and `remote-signing`).
pub(super) fn asks_for_signing(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-iceberg-access-delegation")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|mode| mode.trim().eq_ignore_ascii_case("remote-signing"))
}

/// Whether this Basin can sign for its warehouse: an S3 warehouse, and keys of its own.
pub(super) fn can_sign(lakehouse: &Lakehouse) -> bool {
    let s3 = &lakehouse.settings().s3;
    lakehouse.warehouse().is_s3() && s3.access_key_id.is_some() && s3.secret_access_key.is_some()
}

/// What a loaded table's config adds for a client that asked for signing: Java's switch,
/// and PyIceberg's signer with the FileIO that supports it (its default, pyarrow's, does
/// not). Both send their requests to `{catalog uri}/v1/aws/s3/sign` with the catalog's token.
pub(super) fn signing_config() -> [(&'static str, String); 3] {
    [
        ("s3.remote-signing-enabled", "true".to_string()),
        ("s3.signer", "S3V4RestSigner".to_string()),
        ("py-io-impl", "pyiceberg.io.fsspec.FsspecFileIO".to_string()),
    ]
}

/// `POST /v1/aws/s3/sign`: the request, signed, or why not (403: a request Basin does not
/// sign, or one that needs a writer).
pub(super) async fn sign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Body(request): Body<S3SignRequest>,
) -> RestResult<Json<serde_json::Value>> {
    let lakehouse = &state.lakehouse;
    if !can_sign(lakehouse) {
        let why = if lakehouse.warehouse().is_s3() {
            "this Basin has no S3 keys of its own to sign with (hint: set \
             BASIN_S3_ACCESS_KEY_ID and BASIN_S3_SECRET_ACCESS_KEY for `basin serve`)"
        } else {
            "this lakehouse's warehouse is a local folder: there is nothing to sign \
             (hint: read its files through Basin's SQL doors)"
        };
        return Err(RestError::new(
            StatusCode::NOT_IMPLEMENTED,
            "UnsupportedOperationException",
            why,
        ));
    }
    let refuse =
        |message: String| RestError::new(StatusCode::FORBIDDEN, "ForbiddenException", message);
    let s3 = &lakehouse.settings().s3;
    let uri = Url::parse(&request.uri)
        .map_err(|e| refuse(format!("`{}` is not a URL ({e})", request.uri)))?;
    let method = Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| refuse(format!("`{}` is not an HTTP method", request.method)))?;
    let operation = check(&method, &uri, &request.headers, s3, lakehouse.warehouse())
        .map_err(|why| refuse(format!("Basin does not sign {method} {uri}: {why}")))?;
    let needed = operation.role();
    // The route's guard lets no caller without a role this far.
    let role = caller.role.ok_or_else(|| refuse("no token".to_string()))?;
    if role < needed {
        return Err(refuse(format!(
            "this token is a {}; signing {method} {uri} needs a {} (hint: use a token with \
             that role: basin token create --role {})",
            role.as_str(),
            needed.as_str(),
            needed.as_str()
        )));
    }
    if let Some(grants) = &caller.grants {
        // Files carry no branch: a grant on the table they belong to, on any branch.
        let location = addressed(&uri, s3).map_err(refuse)?;
        let access = match needed {
            Role::Reader => Access::Read,
            _ => Access::Write,
        };
        // A grant on every table reaches every file; otherwise the file's table decides.
        let everything = grants.may_touch_files(None, access);
        let table = match everything {
            true => None,
            false => lakehouse
                .tables()
                .folder_owner(&location)
                .await
                .map_err(|e| refuse(e.to_string()))?,
        };
        if !everything && !grants.may_touch_files(table.as_deref(), access) {
            let whose = match &table {
                Some(table) => format!("table `{table}`'s files"),
                None => "files of no table this token's grants name".to_string(),
            };
            return Err(refuse(format!(
                "this token may not {} {whose} (hint: a token with a grant {}:TABLE reaches \
                 the files of TABLE on any branch; see `basin token create --grant`)",
                access.as_str(),
                access.as_str()
            )));
        }
    }
    let mut headers = to_sign(&request.headers)
        .map_err(|why| RestError::new(StatusCode::BAD_REQUEST, "BadRequestException", why))?;
    if operation.makes_object() {
        // A new object only: every file a commit names stays as it was written.
        headers.insert("if-none-match", HeaderValue::from_static("*"));
    }
    let headers = signed(&method, &uri, headers, s3).await.map_err(|e| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceFailureException",
            format!("cannot sign {method} {uri}: {e}"),
        )
    })?;
    Ok(Json(json!({"uri": uri.as_str(), "headers": headers})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_ask_for_signing_among_other_modes() {
        let mut headers = HeaderMap::new();
        assert!(!asks_for_signing(&headers));
        headers.insert(
            "x-iceberg-access-delegation",
            HeaderValue::from_static("vended-credentials"),
        );
        assert!(!asks_for_signing(&headers));
        headers.insert(
            "x-iceberg-access-delegation",
            HeaderValue::from_static("vended-credentials, Remote-Signing"),
        );
        assert!(asks_for_signing(&headers));
    }
}
