//! The handles a build without distributed SQL has: empty enums, which no code can make.

use std::net::SocketAddr;

/// A scheduler this build cannot start.
#[derive(Clone, Debug)]
pub enum Scheduler {}

impl Scheduler {
    pub fn addr(&self) -> SocketAddr {
        match *self {}
    }

    pub async fn alive_executors(&self) -> usize {
        match *self {}
    }
}

// Dropped where the real handles' drop stops their servers.
impl Drop for Scheduler {
    fn drop(&mut self) {
        match *self {}
    }
}

/// An executor this build cannot start.
#[derive(Debug)]
pub enum SqlExecutor {}

impl SqlExecutor {
    pub fn addr(&self) -> SocketAddr {
        match *self {}
    }

    pub fn tasks_run(&self) -> u64 {
        match *self {}
    }
}

impl Drop for SqlExecutor {
    fn drop(&mut self) {
        match *self {}
    }
}
