//! The client side of `--remote URL`: Basin's HTTP API as served by `basin serve`. Answers
//! decode into the same types the service returns on this machine, and errors into the
//! same [`Error`] (kind, message, hint), so a command prints the same either way.

use basin_core::{Error, ErrorKind, Result};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct Remote {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
    /// `--bypass-protection`: sent as a header the server honours for admin tokens only.
    pub bypass_protection: bool,
}

impl Remote {
    /// A client for the server at `url` (`http://host:8181`), sending `token` if given, and
    /// trusting the certificate in the PEM file `ca_cert` besides the system's.
    pub fn new(
        url: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self> {
        let bad = || {
            Error::invalid(format!("--remote `{url}` is not an http(s) URL"))
                .with_hint("e.g. --remote http://127.0.0.1:8181 (where `basin serve` listens)")
        };
        let base = Url::parse(url).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad());
        }
        basin_table::install_crypto_provider();
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("basin/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let unreadable = |e: &dyn std::fmt::Display| {
                Error::invalid(format!("--ca-cert {}: {e}", path.display()))
                    .with_hint("a PEM certificate (BEGIN CERTIFICATE), e.g. the server's tls_cert")
            };
            let pem = std::fs::read(path).map_err(|e| unreadable(&e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(&e))?;
            if certs.is_empty() {
                return Err(unreadable(&"no certificate in it"));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Error::internal(format!("cannot start an HTTP client: {e}")))?;
        Ok(Self {
            base,
            token,
            http,
            bypass_protection: false,
        })
    }

    /// `/api/v1/` followed by `segments`, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new()")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        url
    }

    /// A request to `/api/v1/SEGMENTS...` with the query pairs whose value is set.
    pub fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> RequestBuilder {
        let mut url = self.url(segments);
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                if let Some(value) = value {
                    pairs.append_pair(name, value);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        // Says the request comes from Basin's CLI, not a web page (see docs/serving.md).
        let request = self
            .http
            .request(method, url)
            .header("x-basin-client", "cli");
        let request = if self.bypass_protection {
            request.header("x-basin-bypass-protection", "1")
        } else {
            request
        };
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends one MCP message (a line of JSON-RPC) to the server's `/mcp` and returns its
    /// answer: `None` for a notification (202). A JSON-RPC error the server answers with 400
    /// is the answer too; a refused token or an unreachable server is an error.
    pub async fn mcp(&self, message: String) -> Result<Option<String>> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new()")
            .pop_if_empty()
            .push("mcp");
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            Error::io(format!("cannot reach {}: {}", self.base, root_cause(&e)))
                .with_hint("is `basin serve` running there? check --remote or BASIN_REMOTE")
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(None);
        }
        if !status.is_success() && status != reqwest::StatusCode::BAD_REQUEST {
            return Err(server_error(response).await);
        }
        let body = response
            .text()
            .await
            .map_err(|e| Error::io_with(format!("the answer from {} broke off", self.base), e))?;
        Ok(Some(body))
    }

    /// Sends a request and checks its status; a non-2xx answer becomes the server's error.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(|e| {
            let cause = root_cause(&e);
            let hint = if cause.contains("certificate") {
                "the server's TLS certificate is not one this machine trusts: pass the \
                 certificate of the authority that signed it with --ca-cert (BASIN_CA_CERT)"
            } else {
                "is `basin serve` running there? check --remote or BASIN_REMOTE"
            };
            Error::io(format!("cannot reach {}: {cause}", self.base)).with_hint(hint)
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(server_error(response).await)
    }

    /// Sends a request and decodes its JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let body =
            self.send(request).await?.bytes().await.map_err(|e| {
                Error::io_with(format!("the answer from {} broke off", self.base), e)
            })?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::internal(format!("cannot read the answer from {}: {e}", self.base))
                .with_hint("is the server the same Basin version as this CLI?")
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<T> {
        self.json(self.request(Method::GET, segments, query)).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &impl Serialize,
    ) -> Result<T> {
        let request = self.request(Method::POST, segments, &[]).json_body(body)?;
        self.json(request).await
    }

    /// A GET whose answer is text (a declaration's TOML).
    pub async fn get_text(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<String> {
        let response = self
            .send(self.request(Method::GET, segments, query))
            .await?;
        response
            .text()
            .await
            .map_err(|e| Error::io_with(format!("the answer from {} broke off", self.base), e))
    }

    pub async fn delete(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Result<()> {
        self.send(self.request(Method::DELETE, segments, query))
            .await
            .map(drop)
    }

    /// Like [`Remote::delete`], for endpoints answering with a JSON body.
    pub async fn delete_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<T> {
        self.json(self.request(Method::DELETE, segments, query))
            .await
    }
}

/// JSON bodies without reqwest's `json` feature (serde_json is here anyway).
pub trait JsonBody {
    fn json_body(self, body: &impl Serialize) -> Result<RequestBuilder>;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, body: &impl Serialize) -> Result<RequestBuilder> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| Error::internal(format!("request body: {e}")))?;
        Ok(self
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes))
    }
}

/// The server's `{"error": {"message", "hint", "kind"}}` as an [`Error`].
async fn server_error(response: Response) -> Error {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        message: String,
        hint: Option<String>,
        kind: Option<String>,
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let Ok(Body { error }) = serde_json::from_str::<Body>(&text) else {
        let text = text.trim();
        return Error::new(
            kind_of_status(status.as_u16()),
            if text.is_empty() {
                format!("the server answered {status}")
            } else {
                format!("the server answered {status}: {text}")
            },
        );
    };
    let kind = match error.kind.as_deref() {
        Some("NotFound") => ErrorKind::NotFound,
        Some("AlreadyExists") => ErrorKind::AlreadyExists,
        Some("Conflict") => ErrorKind::Conflict,
        Some("InvalidInput" | "Unauthorized") => ErrorKind::InvalidInput,
        Some("Store") => ErrorKind::Store,
        Some("Io") => ErrorKind::Io,
        Some("Internal") => ErrorKind::Internal,
        Some("Timeout") => ErrorKind::Timeout,
        Some("Limit") => ErrorKind::Limit,
        Some("Forbidden") => ErrorKind::Forbidden,
        _ => kind_of_status(status.as_u16()),
    };
    let mut e = Error::new(kind, error.message);
    e.hint = error.hint;
    e
}

fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        403 => ErrorKind::Forbidden,
        409 => ErrorKind::Conflict,
        504 => ErrorKind::Timeout,
        413 | 422 => ErrorKind::Limit,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

/// The innermost cause: reqwest's own message ("error sending request") says little.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
