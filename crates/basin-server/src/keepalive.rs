//! TCP keepalive on every accepted connection of both doors (`[server] tcp_keepalive`).
//!
//! A client machine that vanishes (powered off, its network gone, a NAT or load balancer that
//! forgot the connection) sends no FIN: without probes its connection would hold a slot until
//! `pg_idle_timeout` (an hour) and its running statement until `[sql] query_timeout`, and a
//! write to it would retry for a quarter of an hour. With the setting, the kernel probes a
//! connection silent for that long, and one whose peer answers nothing for twice that long
//! (probes or data sent) is ended: its read fails, the door closes it, and a statement
//! running for it is stopped (Postgres notices through `postgres::stopping`, HTTP through
//! hyper's read of the socket; `tests/python/test_security.py` cuts a client's link under
//! both). Postgres' own `tcp_keepalives_idle` and `tcp_user_timeout` do the same.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::net::sockopt;

/// Probes per idle period once the connection has been silent for it.
const PROBES: u32 = 4;

/// Turns keepalive on for `socket` when `idle` is set: probes after `idle` of silence,
/// every quarter of it (at least a second), and the connection ends once its peer has
/// acknowledged nothing for twice `idle`. Failing to set it leaves the socket as it was.
pub(crate) fn keep_alive(socket: &impl AsFd, idle: Option<Duration>) {
    let Some(idle) = idle else { return };
    if let Err(e) = set(socket.as_fd(), idle) {
        tracing::debug!("cannot turn TCP keepalive on: {e}");
    }
}

fn set(fd: std::os::fd::BorrowedFd<'_>, idle: Duration) -> rustix::io::Result<()> {
    let idle = idle.max(Duration::from_secs(1));
    sockopt::set_socket_keepalive(fd, true)?;
    sockopt::set_tcp_keepidle(fd, idle)?;
    sockopt::set_tcp_keepintvl(fd, (idle / PROBES).max(Duration::from_secs(1)))?;
    sockopt::set_tcp_keepcnt(fd, PROBES)?;
    let silence = u32::try_from((idle * 2).as_millis()).unwrap_or(u32::MAX);
    sockopt::set_tcp_user_timeout(fd, silence)
}

/// Whether `e`, or an error under it, is a connection its keepalive ended (`ETIMEDOUT`).
pub(crate) fn ended_it(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // An io::Error wrapping another one does not give it as its source.
            let inner = io.get_ref().is_some_and(|inner| ended_it(inner));
            if io.kind() == io::ErrorKind::TimedOut || inner {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// Whether the socket behind `fd` was ended by its keepalive (its pending error is
/// `ETIMEDOUT`), for a connection whose end was seen without reading it (the Postgres door's).
#[cfg_attr(not(feature = "postgres-wire"), allow(dead_code))]
pub(crate) fn timed_out(fd: &impl AsFd) -> bool {
    matches!(sockopt::socket_error(fd), Ok(Err(e)) if e == rustix::io::Errno::TIMEDOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_accepted_socket_probes_after_the_setting_and_gives_up_after_twice_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        assert!(!sockopt::socket_keepalive(&socket).unwrap());
        keep_alive(&socket, None);
        assert!(
            !sockopt::socket_keepalive(&socket).unwrap(),
            "off leaves it"
        );
        keep_alive(&socket, Some(Duration::from_secs(60)));
        assert!(sockopt::socket_keepalive(&socket).unwrap());
        assert_eq!(
            sockopt::tcp_keepidle(&socket).unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            sockopt::tcp_keepintvl(&socket).unwrap(),
            Duration::from_secs(15)
        );
        assert_eq!(sockopt::tcp_keepcnt(&socket).unwrap(), PROBES);
        assert_eq!(sockopt::tcp_user_timeout(&socket).unwrap(), 120_000);
        assert!(!timed_out(&socket));
    }

    #[test]
    fn a_timed_out_read_under_other_errors_is_the_keepalive_s() {
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert!(ended_it(&timed_out));
        let wrapped = io::Error::other(timed_out);
        assert!(ended_it(&wrapped));
        assert!(!ended_it(&io::Error::from(io::ErrorKind::ConnectionReset)));
    }
}
