//! Signing with Basin's keys: AWS SigV4 over the checked request, as opendal's signer does.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method};
use basin_table::S3Settings;
use reqsign_core::SignRequest as _;
use url::Url;

/// The request with `headers`, signed with Basin's keys: its headers by name.
pub(super) async fn signed(
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
    use std::collections::HashMap;

    use super::*;
    use crate::iceberg_rest::sign::scope::to_sign;

    const LOCAL: Option<&str> = Some("http://127.0.0.1:9000");

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
}
