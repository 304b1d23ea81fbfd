//! The names a request may give in `Host`: the address the server listens on, or one of
//! `[server] allowed_hosts` (see `auth::browser_safety`, which refuses the others).

use std::net::SocketAddr;

/// The names a request may give in `Host`.
#[derive(Clone, Debug)]
pub(crate) struct Hosts {
    listen: Option<SocketAddr>,
    /// From `[server] allowed_hosts`, lower case; `*` allows any.
    allowed: Vec<String>,
}

impl Hosts {
    pub(crate) fn new(listen: Option<SocketAddr>, allowed: Vec<String>) -> Self {
        Self { listen, allowed }
    }

    /// Whether `host` (a `Host` header: name or address, maybe a port) names this server:
    /// a configured name, the address it listens on (any address when it listens on all),
    /// or `localhost` when it listens on loopback.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let name = strip_port(host).to_ascii_lowercase();
        if self.allowed.iter().any(|a| a == "*" || *a == name) {
            return true;
        }
        let Some(listen) = self.listen else {
            return true;
        };
        let address = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>();
        match address {
            Ok(ip) => listen.ip().is_unspecified() || ip == listen.ip(),
            Err(_) => name == "localhost" && listen.ip().is_loopback(),
        }
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8181
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_the_listen_address_or_a_configured_name() {
        let loopback = Hosts::new(Some("127.0.0.1:8181".parse().unwrap()), vec![]);
        for ok in ["127.0.0.1:8181", "127.0.0.1", "localhost:8181", "LOCALHOST"] {
            assert!(loopback.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8181",
            "10.0.0.1:8181",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback.allows(bad), "{bad}");
        }
        let any = Hosts::new(
            Some("0.0.0.0:8181".parse().unwrap()),
            vec!["basin.internal".into()],
        );
        assert!(any.allows("10.1.2.3:8181") && any.allows("basin.internal:443"));
        assert!(!any.allows("rebound.example:8181") && !any.allows("localhost"));
        let v6 = Hosts::new(Some("[::1]:8181".parse().unwrap()), vec![]);
        assert!(v6.allows("[::1]:8181") && v6.allows("localhost") && !v6.allows("[::2]"));
        let star = Hosts::new(Some("127.0.0.1:1".parse().unwrap()), vec!["*".into()]);
        assert!(star.allows("anything.example"));
    }
}
