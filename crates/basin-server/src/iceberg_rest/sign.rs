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
//! for a writer. Never a delete (a table's files go with `basin gc`, which knows what commits
//! still read), a bulk delete (its keys are in a body the signer does not see), a copy from
//! another object, a change of ACL or lock, or a bucket operation: Basin's keys reach more
//! than the warehouse, and whoever holds a signature may use it for 15 minutes.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use basin_service::{Lakehouse, Role};
use basin_table::{S3Settings, Warehouse};
use reqsign_core::SignRequest as _;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::errors::{RestError, RestResult};
use super::request::Body;
use crate::auth::Caller;
use crate::state::AppState;

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

/// Headers Basin signs, when a client sends them: what describes the body it sends or the
/// part of an object it reads, and the checksums of the body. Nothing else is signed: the
/// canonical request is built from the checked URL and these alone.
const SIGNED: &[&str] = &[
    "range",
    "content-type",
    "content-length",
    "content-md5",
    "content-encoding",
    "content-language",
    "content-disposition",
    "cache-control",
    "expires",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-algorithm",
    "x-amz-checksum-mode",
    "x-amz-checksum-type",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-expected-bucket-owner",
];

/// Headers a client may send that Basin leaves out of the signature: its own signature's
/// (made again here), and those a client adds or changes after signing (botocore's list).
/// The client sends them as they are, unsigned, as S3 allows for all but `host` and
/// `x-amz-*`.
const NOT_SIGNED: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "expect",
    "user-agent",
    "x-amzn-trace-id",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
];

/// Why Basin refuses to sign a request carrying header `name` (lowercase), if it does: one
/// that changes what is addressed (`host`, proxies' forwarding headers), or an `x-amz-*` it
/// does not know (S3 needs every `x-amz-*` signed, and they change what a request does: a
/// copy from another object, an ACL, a lock, a storage class or an encryption key that
/// would leave a table's files unreadable).
fn refused_header(name: &str) -> Option<String> {
    if matches!(name, "host" | "forwarded" | ":authority") || name.starts_with("x-forwarded-") {
        return Some(format!(
            "header `{name}` changes what is addressed; Basin signs the URL's own host"
        ));
    }
    if name.starts_with("x-amz-") && !SIGNED.contains(&name) && !NOT_SIGNED.contains(&name) {
        return Some(format!(
            "header `{name}` is not one Basin signs for a table's files"
        ));
    }
    None
}

/// The requests Basin signs.
#[derive(Debug, PartialEq, Eq)]
enum Operation {
    /// GET or HEAD of an object.
    Read,
    /// ListObjectsV2 under the warehouse.
    List,
    /// One PUT of a whole object.
    Put,
    CreateUpload,
    UploadPart,
    CompleteUpload,
    AbortUpload,
}

impl Operation {
    fn role(&self) -> Role {
        match self {
            Operation::Read | Operation::List => Role::Reader,
            _ => Role::Writer,
        }
    }

    /// Whether it makes an object appear under a key: signed with `If-None-Match: *`, so
    /// that it cannot replace one (the stores that honour conditional writes refuse it).
    fn makes_object(&self) -> bool {
        matches!(self, Operation::Put | Operation::CompleteUpload)
    }
}

/// Whether Basin signs `method uri`, and as what.
fn check(
    method: &Method,
    uri: &Url,
    headers: &HashMap<String, Vec<String>>,
    s3: &S3Settings,
    warehouse: &Warehouse,
) -> Result<Operation, String> {
    let (bucket, key) = bucket_and_key(uri, s3)?;
    let (warehouse_bucket, _) = warehouse.s3_bucket().unwrap_or_default();
    if bucket != warehouse_bucket {
        return Err(format!(
            "bucket `{bucket}` is not the warehouse's ({})",
            warehouse.location()
        ));
    }
    if let Some(why) = headers
        .keys()
        .find_map(|name| refused_header(&name.to_ascii_lowercase()))
    {
        return Err(why);
    }
    let query: BTreeMap<String, String> = uri.query_pairs().into_owned().collect();
    if query.len() != uri.query_pairs().count() {
        // The store might read another of the two than this check did.
        return Err("a query parameter is given twice".to_string());
    }
    let has = |k: &str| query.contains_key(k);
    let only = |allowed: &[&str]| query.keys().all(|k| allowed.contains(&k.as_str()));
    let inside = |key: &str| {
        warehouse.contains(&format!("s3://{bucket}/{key}"))
            && !key.split('/').any(|part| part == ".")
    };
    if key.is_empty() {
        // A listing under the warehouse (ListObjectsV2): how clients ask whether a path is
        // a folder.
        let prefix = query.get("prefix").map(String::as_str).unwrap_or_default();
        let list = [
            "list-type",
            "prefix",
            "delimiter",
            "max-keys",
            "continuation-token",
            "start-after",
            "encoding-type",
            "fetch-owner",
            "x-id",
        ];
        return if *method == Method::GET
            && query.get("list-type").map(String::as_str) == Some("2")
            && only(&list)
            && inside(prefix.trim_end_matches('/'))
            && query.get("encoding-type").is_none_or(|e| e == "url")
        {
            Ok(Operation::List)
        } else {
            Err(format!(
                "on the bucket itself only a listing under the warehouse ({}/...) is signed",
                warehouse.location()
            ))
        };
    }
    if !inside(&key) {
        return Err(format!(
            "`s3://{bucket}/{key}` is outside the warehouse {}",
            warehouse.location()
        ));
    }
    let upload = has("uploadId") && only(&["uploadId", "x-id"]);
    match *method {
        Method::GET | Method::HEAD if only(&["partNumber", "versionId", "x-id"]) => {
            Ok(Operation::Read)
        }
        _ if headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("if-match")) =>
        {
            Err("a write that replaces an object (`If-Match`)".to_string())
        }
        Method::PUT if only(&["x-id"]) => Ok(Operation::Put),
        Method::PUT
            if has("partNumber")
                && has("uploadId")
                && only(&["partNumber", "uploadId", "x-id"]) =>
        {
            Ok(Operation::UploadPart)
        }
        Method::POST if has("uploads") && only(&["uploads", "x-id"]) => Ok(Operation::CreateUpload),
        Method::POST if upload => Ok(Operation::CompleteUpload),
        // It deletes only the parts of an upload.
        Method::DELETE if upload => Ok(Operation::AbortUpload),
        Method::DELETE => {
            Err("deleting a file is Basin's (`basin gc` removes those no commit reads)".to_string())
        }
        _ => Err(format!(
            "not a read or write of an object (query {:?})",
            query.keys().collect::<Vec<_>>()
        )),
    }
}

/// The bucket and the (decoded) key `uri` addresses, if it goes to the warehouse's
/// endpoint: path style (`http://host/bucket/key`) or virtual host (`bucket.host/key`).
fn bucket_and_key(uri: &Url, s3: &S3Settings) -> Result<(String, String), String> {
    let endpoint = match &s3.endpoint {
        Some(endpoint) => {
            Url::parse(endpoint).map_err(|e| format!("the endpoint {endpoint}: {e}"))?
        }
        None => Url::parse(&format!("https://s3.{}.amazonaws.com", s3.region()))
            .map_err(|e| e.to_string())?,
    };
    let host = endpoint.host_str().unwrap_or_default();
    let same_server = uri.scheme() == endpoint.scheme()
        && uri.port_or_known_default() == endpoint.port_or_known_default()
        && uri.username().is_empty()
        && uri.password().is_none()
        && uri.fragment().is_none();
    let to = uri.host_str().unwrap_or_default();
    let path = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8()
        .map_err(|_| "its path is not UTF-8".to_string())?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    if same_server && to.eq_ignore_ascii_case(host) {
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        return Ok((bucket.to_string(), key.to_string()));
    }
    if same_server
        && let Some(bucket) = to.strip_suffix(&format!(".{host}"))
        && !bucket.is_empty()
    {
        return Ok((bucket.to_string(), path.to_string()));
    }
    Err(format!(
        "it does not go to the warehouse's endpoint {endpoint}"
    ))
}

/// The client's headers that are signed: those of `SIGNED`, after `check` refused the
/// headers it does not sign.
fn to_sign(headers: &HashMap<String, Vec<String>>) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (name, values) in headers {
        let lower = name.to_ascii_lowercase();
        if !SIGNED.contains(&lower.as_str()) {
            continue;
        }
        let name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|e| format!("header `{name}`: {e}"))?;
        for value in values {
            let value =
                HeaderValue::from_str(value).map_err(|e| format!("header `{name}`: {e}"))?;
            out.append(name.clone(), value);
        }
    }
    Ok(out)
}

/// The request with `headers`, signed with Basin's keys: its headers by name.
async fn signed(
    method: &Method,
    uri: &Url,
    headers: HeaderMap,
    s3: &S3Settings,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let (mut parts, ()) = axum::http::Request::builder()
        .method(method.clone())
        .uri(uri.as_str())
        .body(())
        .map_err(|e| e.to_string())?
        .into_parts();
    parts.headers = headers;
    let credential = reqsign_aws_v4::Credential {
        access_key_id: s3.access_key_id.clone().unwrap_or_default(),
        secret_access_key: s3.secret_access_key.clone().unwrap_or_default(),
        session_token: s3.session_token.clone(),
        expires_in: None,
    };
    reqsign_aws_v4::RequestSigner::new("s3", s3.region())
        .sign_request(
            &reqsign_core::Context::new(),
            &mut parts,
            Some(&credential),
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|e| format!("header `{name}`: {e}"))?;
        out.entry(name.as_str().to_string())
            .or_default()
            .push(value.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>) -> S3Settings {
        S3Settings {
            endpoint: endpoint.map(str::to_string),
            region: Some("eu-west-1".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("secret".into()),
            session_token: None,
            path_style: true,
        }
    }

    fn verdict(
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        endpoint: Option<&str>,
    ) -> Result<Operation, String> {
        let s3 = settings(endpoint);
        let warehouse = Warehouse::s3("s3://lake/wh", &s3).unwrap();
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect();
        check(
            &method,
            &Url::parse(uri).unwrap(),
            &headers,
            &s3,
            &warehouse,
        )
    }

    const LOCAL: Option<&str> = Some("http://127.0.0.1:9000");

    #[test]
    fn reads_need_a_reader_and_writes_a_writer() {
        let file = "http://127.0.0.1:9000/lake/wh/sales/orders-1/data/a.parquet";
        let signed = [
            (Method::GET, file.to_string(), Operation::Read),
            (Method::HEAD, file.to_string(), Operation::Read),
            (Method::PUT, file.to_string(), Operation::Put),
            (
                Method::POST,
                format!("{file}?uploads"),
                Operation::CreateUpload,
            ),
            (
                Method::PUT,
                format!("{file}?partNumber=2&uploadId=u1"),
                Operation::UploadPart,
            ),
            (
                Method::POST,
                format!("{file}?uploadId=u1"),
                Operation::CompleteUpload,
            ),
            (
                Method::DELETE,
                format!("{file}?uploadId=u1"),
                Operation::AbortUpload,
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake?list-type=2&prefix=wh/sales/&delimiter=/&max-keys=1"
                    .to_string(),
                Operation::List,
            ),
        ];
        for (method, uri, operation) in signed {
            assert_eq!(
                verdict(method.clone(), &uri, &[], LOCAL).as_ref(),
                Ok(&operation),
                "{method} {uri}"
            );
        }
        assert_eq!(Operation::Read.role(), Role::Reader);
        assert_eq!(Operation::List.role(), Role::Reader);
        assert_eq!(Operation::AbortUpload.role(), Role::Writer);
        assert!(Operation::Put.makes_object() && Operation::CompleteUpload.makes_object());
        assert!(!Operation::UploadPart.makes_object());
    }

    #[test]
    fn virtual_hosted_and_aws_addresses_are_understood() {
        let aws = "https://lake.s3.eu-west-1.amazonaws.com/wh/t/data/a.parquet";
        assert_eq!(verdict(Method::GET, aws, &[], None), Ok(Operation::Read));
        let path_style = "https://s3.eu-west-1.amazonaws.com/lake/wh/t/data/a.parquet";
        assert_eq!(
            verdict(Method::GET, path_style, &[], None),
            Ok(Operation::Read)
        );
        let encoded = "http://127.0.0.1:9000/lake/wh/t/data/a%20b.parquet";
        assert_eq!(
            verdict(Method::GET, encoded, &[], LOCAL),
            Ok(Operation::Read)
        );
    }

    #[test]
    fn anything_outside_the_warehouse_or_its_operations_is_refused() {
        let refused = [
            // Another server, scheme, port or bucket: Basin's keys may reach them too.
            (
                Method::GET,
                "http://evil.example:9000/lake/wh/t/a.parquet",
                &[][..],
            ),
            (
                Method::GET,
                "https://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9001/lake/wh/t/a.parquet",
                &[],
            ),
            (
                Method::GET,
                "http://user@127.0.0.1:9000/lake/wh/t/a.parquet",
                &[],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/other/wh/t/a.parquet",
                &[],
            ),
            (
                Method::GET,
                "http://lake.evil.example:9000/wh/t/a.parquet",
                &[],
            ),
            // Outside the prefix, or climbing out of it.
            (
                Method::GET,
                "http://127.0.0.1:9000/lake/whx/t/a.parquet",
                &[],
            ),
            (Method::GET, "http://127.0.0.1:9000/lake/secrets.txt", &[]),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake/wh/%2E%2E/secrets.txt",
                &[],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake/wh/t/../../secrets.txt",
                &[],
            ),
            // Operations a table's files never need.
            (
                Method::DELETE,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[],
            ),
            (Method::POST, "http://127.0.0.1:9000/lake?delete", &[]),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet?acl",
                &[],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet?tagging",
                &[],
            ),
            (
                Method::POST,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet?restore",
                &[],
            ),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("x-amz-copy-source", "/other/k")],
            ),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("X-Amz-Acl", "public-read")],
            ),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("If-Match", "\"etag\"")],
            ),
            // A host of the client's own: the signature would be good for another bucket
            // (virtual-host style) or another server.
            (
                Method::GET,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("Host", "other.127.0.0.1:9000")],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("X-Forwarded-Host", "other")],
            ),
            // An x-amz-* Basin does not know: storage classes and encryption keys would
            // leave a file unreadable, metadata and tags are not a table's.
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("x-amz-storage-class", "GLACIER")],
            ),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("x-amz-server-side-encryption-customer-key", "k")],
            ),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("X-Amz-Meta-Owner", "me")],
            ),
            (
                Method::PUT,
                "http://127.0.0.1:9000/lake/wh/t/a.parquet",
                &[("x-amz-tagging", "a=b")],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake?list-type=2&prefix=",
                &[],
            ),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake?list-type=2&prefix=whx/",
                &[],
            ),
            (Method::GET, "http://127.0.0.1:9000/lake?prefix=wh/", &[]),
            (
                Method::GET,
                "http://127.0.0.1:9000/lake?list-type=2&prefix=other/&prefix=wh/t/",
                &[],
            ),
            (Method::PUT, "http://127.0.0.1:9000/lake", &[]),
            (Method::DELETE, "http://127.0.0.1:9000/lake", &[]),
        ];
        for (method, uri, headers) in refused {
            let verdict = verdict(method.clone(), uri, headers, LOCAL);
            assert!(verdict.is_err(), "{method} {uri} {headers:?}: {verdict:?}");
        }
    }

    #[tokio::test]
    async fn the_signature_is_sigv4_over_the_request_with_basins_keys() {
        let uri = Url::parse("http://127.0.0.1:9000/lake/wh/t/a.parquet").unwrap();
        let headers = HashMap::from([
            ("Range".to_string(), vec!["bytes=0-99".to_string()]),
            // A client's own attempt is not signed over.
            (
                "Authorization".to_string(),
                vec!["AWS4-HMAC-SHA256 Credential=theirs".to_string()],
            ),
            ("User-Agent".to_string(), vec!["botocore".to_string()]),
            // Neither is signed: only the headers Basin knows are.
            ("Accept-Encoding".to_string(), vec!["gzip".to_string()]),
            ("X-Custom".to_string(), vec!["1".to_string()]),
        ]);
        let out = signed(
            &Method::GET,
            &uri,
            to_sign(&headers).unwrap(),
            &settings(LOCAL),
        )
        .await
        .unwrap();
        let auth = &out["authorization"][0];
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/s3/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"),
            "{auth}"
        );
        assert_eq!(out["host"], vec!["127.0.0.1:9000"]);
        assert_eq!(out["range"], vec!["bytes=0-99"]);
        assert!(!out.contains_key("user-agent"));
        assert!(!out.contains_key("x-custom") && !out.contains_key("accept-encoding"));
    }

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
