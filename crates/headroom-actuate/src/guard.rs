//! The idempotence guard every actuator shares: a decision id is carried
//! out at most once, and one change at a time is in flight per target.
//!
//! Before it touches anything, an actuator claims the decision id on the
//! thing it acts on (a workload, unit, service or supervised process: the
//! *target key*, any string unique within the actuator) and is answered
//! ([`Claims::claim`]):
//!
//! * [`Claim::Proceed`] with a [`Ticket`]: the target is now the claimant's.
//!   [`Ticket::done`] once the change succeeded remembers the id as carried
//!   out; dropping the ticket without it (the change failed, or the future
//!   carrying it was dropped) frees the target and remembers nothing, so the
//!   same decision may be tried again.
//! * [`Claim::AlreadyDone`]: the id was carried out: do nothing.
//! * [`Claim::Busy`]: a change on the target is in flight (this decision or
//!   another); the words name the decision in flight.
//!
//! [`Claims::claim_when_free`] waits out `Busy` instead of answering it: a
//! second change on a target starts when the first has ended, and finds the
//! id done if the first was the same decision and succeeded.
//!
//! **Bounded.** Only the newest [`REMEMBERED_IDS`] ids are remembered, the
//! oldest forgotten first, and the in-flight map holds one entry per live
//! ticket, so a daemon running for months does not grow. This memory is not
//! the durable record: the audit log is. [`execute`](crate::execute) never
//! carries out an id the log has as done, whatever the guard has forgotten
//! and across restarts of headroom; the guard makes `apply` itself
//! idempotent within one process (the [`Actuator`](crate::Actuator)
//! contract) and keeps two changes to one target from interleaving.
//!
//! **Thread-safe.** One `std::sync::Mutex` holds the state, locked only for
//! a lookup or an insert and never across an `.await`. [`Claims`] is cheap to
//! clone (clones share the state), and a [`Ticket`] may move to another
//! thread (a blocking task) and be settled there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// How many decision ids a [`Claims`] remembers as carried out (the oldest
/// are forgotten beyond this; the audit log remembers all).
pub const REMEMBERED_IDS: usize = 10_000;

/// Decision ids carried out, in memory: the newest [`REMEMBERED_IDS`].
#[derive(Debug, Default)]
struct RecentIds {
    set: HashSet<String>,
    /// The ids in `set`, oldest first.
    order: VecDeque<String>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`, forgetting the oldest beyond [`REMEMBERED_IDS`].
    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            while self.order.len() > REMEMBERED_IDS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

#[derive(Debug, Default)]
struct Ledger {
    done: RecentIds,
    /// Target key → decision id in flight.
    busy: HashMap<String, String>,
}

#[derive(Default)]
struct Shared {
    ledger: Mutex<Ledger>,
    /// Told whenever a ticket frees its target, for [`Claims::claim_when_free`].
    freed: Notify,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Every change under the lock is a single insert or remove: a panic
        // elsewhere cannot leave the ledger half-written.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a claimed decision may proceed (see [`Claims::claim`]).
#[derive(Debug)]
pub enum Claim {
    /// Go ahead; call [`Ticket::done`] once it succeeded.
    Proceed(Ticket),
    /// This decision id was carried out already: do nothing.
    AlreadyDone,
    /// This decision, or another one on the same target, is being carried
    /// out now; the words name the decision in flight.
    Busy(String),
}

/// Decision ids carried out (in memory, the newest [`REMEMBERED_IDS`]) and
/// the targets being acted on now. Cheap to clone (clones share the state).
#[derive(Clone, Default)]
pub struct Claims {
    shared: Arc<Shared>,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.shared.ledger();
        f.debug_struct("Claims").field("remembered", &l.done.len()).field("in_flight", &l.busy).finish()
    }
}

impl Claims {
    /// Nothing carried out, nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Claims decision `id` on `target`: `Proceed` unless the id was carried
    /// out already or a change on `target` is in flight now.
    pub fn claim(&self, id: &str, target: &str) -> Claim {
        let mut l = self.shared.ledger();
        if l.done.contains(id) {
            return Claim::AlreadyDone;
        }
        if let Some(other) = l.busy.get(target) {
            return Claim::Busy(if other == id {
                format!("decision {id} is being carried out on {target} now")
            } else {
                format!("decision {other} is being carried out on {target} now; {id} waits for a later cycle")
            });
        }
        l.busy.insert(target.to_owned(), id.to_owned());
        Claim::Proceed(Ticket { shared: self.shared.clone(), id: id.to_owned(), target: target.to_owned() })
    }

    /// Like [`claim`](Claims::claim), but while a change on `target` is in
    /// flight it waits for that change to end instead of answering `Busy`.
    /// `Some` is the ticket to proceed with; `None`: the id was carried out
    /// already (perhaps by the very change waited for), do nothing.
    ///
    /// Dropping the returned future while it waits claims nothing.
    pub async fn claim_when_free(&self, id: &str, target: &str) -> Option<Ticket> {
        loop {
            // Registered before looking, so a ticket freed in between still wakes us.
            let mut freed = std::pin::pin!(self.shared.freed.notified());
            freed.as_mut().enable();
            match self.claim(id, target) {
                Claim::Proceed(ticket) => return Some(ticket),
                Claim::AlreadyDone => return None,
                Claim::Busy(_) => freed.await,
            }
        }
    }

    /// Whether decision `id` was carried out (and is still remembered).
    pub fn is_done(&self, id: &str) -> bool {
        self.shared.ledger().done.contains(id)
    }
}

/// A claim in progress: [`done`](Ticket::done) remembers the id as carried
/// out; dropping it without (a failure) frees the id and the target again.
pub struct Ticket {
    shared: Arc<Shared>,
    id: String,
    target: String,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).field("target", &self.target).finish()
    }
}

impl Ticket {
    /// The decision succeeded: it is never carried out again (while remembered).
    pub fn done(self) {
        self.shared.ledger().done.insert(&self.id);
        // Dropping `self` now frees the target.
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut l = self.shared.ledger();
            if l.busy.get(&self.target) == Some(&self.id) {
                l.busy.remove(&self.target);
            }
        }
        self.shared.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    #[test]
    fn a_decision_id_is_carried_out_once_and_one_at_a_time_per_target() {
        let claims = Claims::new();
        let Claim::Proceed(ticket) = claims.claim("d1", "Spooler") else { panic!() };
        // While it runs: the same id, or another decision on the same target, waits.
        assert!(matches!(claims.claim("d1", "Spooler"), Claim::Busy(w) if w.contains("d1 is being carried out")));
        assert!(matches!(claims.claim("d2", "Spooler"), Claim::Busy(w) if w.contains("d2 waits")));
        // Another target is independent.
        let Claim::Proceed(other) = claims.claim("d3", "W32Time") else { panic!() };
        ticket.done();
        assert!(claims.is_done("d1"));
        assert!(matches!(claims.claim("d1", "Spooler"), Claim::AlreadyDone));
        // A failed attempt (ticket dropped) may be tried again.
        drop(other);
        assert!(!claims.is_done("d3"));
        let Claim::Proceed(again) = claims.claim("d3", "W32Time") else { panic!() };
        drop(again);
        // Clones share the ledger.
        assert!(matches!(claims.clone().claim("d1", "Spooler"), Claim::AlreadyDone));
    }

    #[test]
    fn the_same_id_twice_is_already_done_on_any_target() {
        let claims = Claims::new();
        let Claim::Proceed(t) = claims.claim("d1", "web") else { panic!() };
        t.done();
        assert!(matches!(claims.claim("d1", "web"), Claim::AlreadyDone));
        // The id decides, not the target: a decision is carried out once.
        assert!(matches!(claims.claim("d1", "db"), Claim::AlreadyDone));
        // And the target is free for another decision.
        assert!(matches!(claims.claim("d2", "web"), Claim::Proceed(_)));
    }

    #[test]
    fn of_concurrent_claims_on_one_target_one_proceeds_and_the_others_are_told_which() {
        let claims = Claims::new();
        let threads = 8;
        let start = Barrier::new(threads);
        let claimed = Barrier::new(threads);
        let answers: Vec<std::result::Result<String, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let (claims, start, claimed) = (&claims, &start, &claimed);
                    s.spawn(move || {
                        start.wait();
                        let claim = claims.claim(&format!("d{i}"), "web");
                        // Every thread holds its answer until all have claimed.
                        claimed.wait();
                        match claim {
                            Claim::Proceed(ticket) => Ok(ticket.id.clone()),
                            Claim::Busy(why) => Err(why),
                            Claim::AlreadyDone => panic!("nothing was done yet"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{answers:?}");
        for busy in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert!(busy.contains(&format!("decision {} is being carried out on web", winners[0])), "{busy}");
        }
        // The winner's ticket was dropped without `done`: the target is free, nothing remembered.
        assert!(matches!(claims.claim("d0", "web"), Claim::Proceed(_)));
        assert!((0..threads).all(|i| !claims.is_done(&format!("d{i}"))));
    }

    #[test]
    fn a_failed_change_frees_its_target_and_may_be_retried() {
        let claims = Claims::new();
        let Claim::Proceed(t) = claims.claim("d1", "web") else { panic!() };
        drop(t); // the apply failed
        assert!(!claims.is_done("d1"));
        let Claim::Proceed(retry) = claims.claim("d1", "web") else { panic!("the retry is refused") };
        retry.done();
        assert!(matches!(claims.claim("d1", "web"), Claim::AlreadyDone));
    }

    #[test]
    fn only_the_newest_ids_are_remembered() {
        let claims = Claims::new();
        for i in 0..=REMEMBERED_IDS {
            let Claim::Proceed(t) = claims.claim(&format!("d{i}"), "svc") else { panic!() };
            t.done();
        }
        assert!(!claims.is_done("d0"), "the oldest is forgotten (the audit log still has it)");
        assert!(claims.is_done("d1") && claims.is_done(&format!("d{REMEMBERED_IDS}")));
    }

    #[test]
    fn memory_stays_bounded_however_many_decisions_pass() {
        let claims = Claims::new();
        let n = 3 * REMEMBERED_IDS;
        for i in 0..n {
            let Claim::Proceed(t) = claims.claim(&format!("d{i}"), &format!("t{}", i % 7)) else { panic!() };
            if i % 5 == 0 {
                drop(t); // failures leave nothing behind
            } else {
                t.done();
            }
        }
        let l = claims.shared.ledger();
        assert_eq!((l.done.set.len(), l.done.order.len()), (REMEMBERED_IDS, REMEMBERED_IDS));
        assert!(l.busy.is_empty(), "no ticket is alive: {:?}", l.busy);
        drop(l);
        // The newest are the ones kept, in order: the last N successes.
        let oldest_kept = (0..n).rev().filter(|i| i % 5 != 0).nth(REMEMBERED_IDS - 1).unwrap();
        assert!(claims.is_done(&format!("d{oldest_kept}")));
        let newest_forgotten = (0..oldest_kept).rev().find(|i| i % 5 != 0).unwrap();
        assert!(!claims.is_done(&format!("d{newest_forgotten}")));
        assert!(format!("{claims:?}").contains(&format!("remembered: {REMEMBERED_IDS}")), "{claims:?}");
    }

    /// Lets every other task on this (current-thread) runtime run a while.
    async fn let_others_run() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_waiting_claim_starts_when_the_change_in_flight_ends() {
        let claims = Claims::new();
        let Claim::Proceed(first) = claims.claim("d1", "web") else { panic!() };
        let waiter = tokio::spawn({
            let claims = claims.clone();
            async move { claims.claim_when_free("d2", "web").await }
        });
        let_others_run().await;
        assert!(!waiter.is_finished(), "d2 started while d1 was in flight");
        first.done();
        let second = waiter.await.unwrap().expect("d2 proceeds once d1 is done");
        assert!(matches!(claims.claim("d3", "web"), Claim::Busy(w) if w.contains("decision d2")));
        drop(second);
        assert!(claims.claim_when_free("d3", "web").await.is_some(), "a free target is claimed at once");
    }

    #[tokio::test]
    async fn waiting_on_the_same_decision_finds_it_done_or_tries_again_after_a_failure() {
        let claims = Claims::new();
        let wait_d1 = |claims: &Claims| {
            let claims = claims.clone();
            tokio::spawn(async move { claims.claim_when_free("d1", "web").await })
        };
        // The change in flight fails: the waiter carries the same decision out.
        let Claim::Proceed(failing) = claims.claim("d1", "web") else { panic!() };
        let waiter = wait_d1(&claims);
        let_others_run().await;
        drop(failing);
        let retry = waiter.await.unwrap().expect("tried again after the failure");
        // Now it succeeds: a waiter on the same id is told it was done.
        let waiter = wait_d1(&claims);
        let_others_run().await;
        assert!(!waiter.is_finished());
        retry.done();
        assert!(waiter.await.unwrap().is_none(), "the same decision is not carried out twice");
    }

    #[tokio::test]
    async fn a_waiter_given_up_on_claims_nothing() {
        let claims = Claims::new();
        let Claim::Proceed(first) = claims.claim("d1", "web") else { panic!() };
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(10), claims.claim_when_free("d2", "web")).await;
        assert!(gave_up.is_err());
        drop(first);
        assert!(matches!(claims.claim("d2", "web"), Claim::Proceed(_)));
        assert!(claims.shared.ledger().busy.is_empty());
    }
}
