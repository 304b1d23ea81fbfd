//! Connection slots of one door (HTTP or Postgres), given to clients that have shown they
//! are clients.
//!
//! Before, a connection took a slot when it was accepted: a few hundred idle sockets, from
//! anyone, took every slot before a byte or a login arrived, and took them again each time
//! `header_read_timeout` sent them away. Now:
//! - a connection accepted but without a slot yet is *pending*; at most `max_connections`
//!   are (more wait in the kernel's listen queue), and each must show itself within
//!   `[server] handshake_timeout`: its first bytes over HTTP, its login over Postgres;
//! - one client address holds at most `[server] max_connections_per_client` connections,
//!   pending or not; one more is closed at once;
//! - a slot (`[server] max_connections`) is taken only then; when all are taken,
//!   `[server] reserved_connections` more are kept for `/healthz` and admin tokens, so an
//!   operator can still look and act while readers fill the door.
//!
//! Each limit hit is counted (`basin_limit_hits_total{limit=...}`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots of one door.
#[derive(Clone)]
pub(crate) struct Slots {
    inner: Arc<Inner>,
}

struct Inner {
    /// Connections accepted that hold no slot yet.
    pending: Arc<Semaphore>,
    general: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    clients: Mutex<HashMap<IpAddr, usize>>,
    per_client: usize,
    /// Counts a limit hit, by the setting's name.
    hit: Arc<dyn Fn(&'static str) + Send + Sync>,
    /// The door's name in metrics: `""` (HTTP) or `"pg_"`.
    prefix: &'static str,
    /// `max_connections` and `reserved_connections`.
    #[cfg_attr(not(test), allow(dead_code))]
    sizes: (usize, usize),
}

/// What a connection holds while it lives: its place among its client's connections, its
/// turn among the pending ones, and once it has shown itself, a slot.
pub(crate) struct Admitted {
    slots: Slots,
    ip: IpAddr,
    pending: Option<OwnedSemaphorePermit>,
}

/// A slot: one of `max_connections`, or one kept for `/healthz` and admins.
#[derive(Debug)]
pub(crate) enum Slot {
    General(#[allow(dead_code)] OwnedSemaphorePermit),
    Reserved(#[allow(dead_code)] OwnedSemaphorePermit),
}

impl Slot {
    pub(crate) fn is_reserved(&self) -> bool {
        matches!(self, Slot::Reserved(_))
    }
}

/// A request on a connection that holds a reserved slot (a request extension): only
/// `/healthz` and admins are served on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OnReservedSlot;

impl Slots {
    pub(crate) fn new(
        max_connections: usize,
        reserved: usize,
        per_client: usize,
        hit: Arc<dyn Fn(&'static str) + Send + Sync>,
        prefix: &'static str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pending: Arc::new(Semaphore::new(max_connections.max(1))),
                general: Arc::new(Semaphore::new(max_connections.max(1))),
                reserved: Arc::new(Semaphore::new(reserved)),
                clients: Mutex::default(),
                per_client: per_client.max(1),
                hit,
                prefix,
                sizes: (max_connections.max(1), reserved),
            }),
        }
    }

    fn hit(&self, limit: &'static str) {
        let name = match (self.inner.prefix, limit) {
            ("pg_", "max_connections") => "pg_max_connections",
            ("pg_", "max_connections_per_client") => "pg_max_connections_per_client",
            ("pg_", "handshake_timeout") => "pg_handshake_timeout",
            ("pg_", "reserved_connections") => "pg_reserved_connections",
            (_, limit) => limit,
        };
        (self.inner.hit)(name);
    }

    /// Admits a connection accepted from `ip`, unless its client already holds
    /// `max_connections_per_client` (then it is to be closed). It then waits its turn among
    /// the pending ones ([`Admitted::pending`]).
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let ip = ip.to_canonical();
        let mut clients = self.inner.clients.lock().expect("connection slots");
        let held = clients.entry(ip).or_default();
        if *held >= self.inner.per_client {
            drop(clients);
            self.hit("max_connections_per_client");
            tracing::debug!(%ip, "refused a connection: the client holds its limit");
            return None;
        }
        *held += 1;
        Some(Admitted {
            slots: self.clone(),
            ip,
            pending: None,
        })
    }

    /// Counts a connection sent away for not showing itself in time.
    pub(crate) fn too_slow(&self) {
        self.hit("handshake_timeout");
    }

    /// Connections holding a slot now, general and reserved.
    #[cfg(test)]
    fn taken(&self) -> (usize, usize) {
        let inner = &self.inner;
        (
            inner.sizes.0 - inner.general.available_permits(),
            inner.sizes.1 - inner.reserved.available_permits(),
        )
    }
}

impl Admitted {
    /// Waits until fewer than `max_connections` connections are pending (accepted, without a
    /// slot yet), and counts this one among them.
    pub(crate) async fn pending(&mut self) {
        let pending = &self.slots.inner.pending;
        let permit = match pending.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: counted once per wait.
                self.slots.hit("max_connections");
                pending
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        self.pending = Some(permit);
    }

    /// A general slot now, else a reserved one; `None` when none is free. The connection
    /// stops being pending once it has one.
    pub(crate) fn take(&mut self) -> Option<Slot> {
        self.take_general().or_else(|| self.take_reserved())
    }

    /// A general slot now, if one is free.
    pub(crate) fn take_general(&mut self) -> Option<Slot> {
        let permit = self.slots.inner.general.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.slots.hit("max_connections");
        }
        let slot = Slot::General(permit?);
        self.pending = None;
        Some(slot)
    }

    /// One of the slots kept for admins, if one is free.
    pub(crate) fn take_reserved(&mut self) -> Option<Slot> {
        let permit = self.slots.inner.reserved.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.slots.hit("reserved_connections");
        }
        let slot = Slot::Reserved(permit?);
        self.pending = None;
        Some(slot)
    }

    /// A slot, waiting for the first freed: a general one, or with `reserved_too` one of the
    /// reserved ones too (an HTTP connection does not know yet whom it carries; a Postgres
    /// admin does). Without it, a connection arriving while a `/healthz` or admin connection
    /// is still closing would be sent away though its slot is about to be free.
    pub(crate) async fn wait(&mut self, reserved_too: bool) -> Slot {
        let inner = &self.slots.inner;
        let general = inner.general.clone().acquire_owned();
        let reserved = async {
            if reserved_too {
                inner.reserved.clone().acquire_owned().await
            } else {
                std::future::pending().await
            }
        };
        let slot = tokio::select! {
            permit = general => Slot::General(permit.expect("the semaphore is never closed")),
            permit = reserved => Slot::Reserved(permit.expect("the semaphore is never closed")),
        };
        self.pending = None;
        slot
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut clients = self.slots.inner.clients.lock().expect("connection slots");
        if let Some(held) = clients.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, reserved: usize, per_client: usize) -> Slots {
        Slots::new(max, reserved, per_client, Arc::new(|_| {}), "")
    }

    #[tokio::test]
    async fn a_client_holds_at_most_its_share_and_gives_it_back() {
        let slots = slots(8, 1, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = slots.admit(ip).unwrap();
        let second = slots.admit(ip).unwrap();
        assert!(slots.admit(ip).is_none());
        // Another client is not held up by the first's.
        assert!(slots.admit("10.0.0.2".parse().unwrap()).is_some());
        drop(first);
        assert!(slots.admit(ip).is_some());
        drop(second);
    }

    #[tokio::test]
    async fn past_the_general_slots_only_the_reserved_ones_are_left() {
        let slots = slots(2, 1, 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut admitted = slots.admit(ip).unwrap();
            admitted.pending().await;
            let slot = admitted.take().unwrap();
            assert!(!slot.is_reserved());
            held.push((admitted, slot));
        }
        let mut third = slots.admit(ip).unwrap();
        third.pending().await;
        let reserved = third.take().unwrap();
        assert!(reserved.is_reserved());
        let mut fourth = slots.admit(ip).unwrap();
        fourth.pending().await;
        assert!(fourth.take().is_none());
        assert_eq!(slots.taken(), (2, 1));
        // A slot given back goes to whoever waits for one.
        let waiting = tokio::spawn(async move { fourth.wait(false).await.is_reserved() });
        held.pop();
        assert!(!waiting.await.unwrap());
        drop(reserved);
        assert_eq!(slots.taken(), (1, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_may_take_a_reserved_slot_gets_the_first_freed() {
        let slots = slots(1, 1, 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        for reserved in [false, true] {
            let mut admitted = slots.admit(ip).unwrap();
            admitted.pending().await;
            let slot = admitted.take().unwrap();
            assert_eq!(slot.is_reserved(), reserved);
            held.push((admitted, slot));
        }
        let mut third = slots.admit(ip).unwrap();
        third.pending().await;
        assert!(third.take().is_none());
        let waiting = tokio::spawn(async move { third.wait(true).await.is_reserved() });
        // The reserved slot's connection closes first (a `/healthz` answered): it goes to
        // the waiter, though the general one is still held.
        held.pop();
        assert!(waiting.await.unwrap());
        assert_eq!(slots.taken(), (1, 0)); // the waiter's slot ended with its task
    }
}
