//! What Basin signs, and nothing else: a request to the warehouse's endpoint and bucket,
//! for a key under the warehouse, as one of the operations a role allows ([`check`]), with
//! only the headers it knows ([`to_sign`]).

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use basin_service::Role;
use basin_table::{S3Settings, Warehouse};
use url::Url;

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
pub(super) enum Operation {
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
    pub(super) fn role(&self) -> Role {
        match self {
            Operation::Read | Operation::List => Role::Reader,
            _ => Role::Writer,
        }
    }

    /// Whether it makes an object appear under a key: signed with `If-None-Match: *`, so
    /// that it cannot replace one (the stores that honour conditional writes refuse it).
    pub(super) fn makes_object(&self) -> bool {
        matches!(self, Operation::Put | Operation::CompleteUpload)
    }
}

/// Whether Basin signs `method uri`, and as what.
pub(super) fn check(
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

/// The location a request [`check`] passed addresses: `s3://bucket/key`, or for a listing
/// `s3://bucket/prefix`.
pub(super) fn addressed(uri: &Url, s3: &S3Settings) -> Result<String, String> {
    let (bucket, key) = bucket_and_key(uri, s3)?;
    let path = if key.is_empty() {
        uri.query_pairs()
            .find(|(k, _)| k == "prefix")
            .map(|(_, v)| v.trim_end_matches('/').to_string())
            .unwrap_or_default()
    } else {
        key
    };
    Ok(format!("s3://{bucket}/{path}"))
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
pub(super) fn to_sign(headers: &HashMap<String, Vec<String>>) -> Result<HeaderMap, String> {
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
}
