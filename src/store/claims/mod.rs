//! Retry claims on failures: claiming a failure for a retry, finishing or releasing the claim,
//! and selecting what is due. (The per-app circuit breaker rows are [`super::circuits`].)
//!
//! A claim is a lease: `claimed_by` names the claimer (one id per worker or `retry` command
//! run) and `claimed_until` when the lease ends, so a claimer that crashed mid-retry blocks a
//! failure only until its lease expires. Claims are taken with a conditional `UPDATE` inside a
//! `BEGIN IMMEDIATE` transaction (the caller's), which SQLite serializes across processes:
//! two claimers can never both hold the same failure. Finishing checks the claim is still
//! ours, so a retry that outlived its lease never overwrites the next claimer's result.
//!
//! Functions take the caller's [`Tx`] so that a claim, its history row and a circuit change
//! land together. Which failures are due is decided here in SQL (the retry backoff itself is
//! `crate::retry::policy`).
//!
//! By job: `select` decides what is due (and which failures belong to an app or user),
//! `claim` takes and checks claims, `finish` ends and releases them, `pushed` tracks
//! the pushes awaiting their outcome, and `profile` the re-arming of exhausted failures
//! after a profile change. Everything is re-exported here, so callers keep `claims::name`.
//! The tests below run whole due -> claim -> finish cycles across those modules.

mod claim;
mod finish;
mod profile;
mod pushed;
mod select;

pub use claim::*;
pub use finish::*;
pub use profile::*;
pub use pushed::*;
pub use select::*;

use super::failures::COLUMNS;
use crate::domain::Operation;

/// SQL list of operation names, e.g. `'create','update'`. Names come from [`Operation::as_str`],
/// never from input, so inlining them is safe.
fn op_list(ops: &[Operation]) -> String {
    if ops.is_empty() {
        return "''".to_string();
    }
    ops.iter()
        .map(|o| format!("'{}'", o.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prefixes [`COLUMNS`] with a table alias.
fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{HistoryKind, State};
    use crate::domain::{Observation, Source};
    use crate::store::circuits::{self, Circuit};
    use crate::store::failures::{apply, Applied};
    use crate::store::Store;
    use crate::store::{failures, Tx};

    fn open(c: &Tx<'_>, user: &str, op: Operation, now: i64) -> i64 {
        let o = Observation {
            app_id: "0oa1".into(),
            app_label: Some("Sales".into()),
            user_id: user.into(),
            user_login: Some(format!("{user}@x")),
            operation: op,
            failed: true,
            reason: Some("down".into()),
            event_uuid: None,
            published_ms: None,
            source: Source::Scan,
        };
        match apply(c, &o, now, "t").unwrap() {
            Applied::Opened(id) => id,
            other => panic!("{other:?}"),
        }
    }

    const OPS: [Operation; 2] = [Operation::Create, Operation::Update];

    #[test]
    fn one_retry_per_app_user_at_a_time() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let create = open(c, "00u1", Operation::Create, 1_000);
            let update = open(c, "00u1", Operation::Update, 1_000);
            let other = open(c, "00u2", Operation::Update, 1_000);
            let q = DueQuery {
                now: 2_000,
                initial_backoff_ms: 0,
                ops: &OPS,
            };
            assert_eq!(next_due(c, &q)?.unwrap().id, create);
            claim(c, create, "a", 2_000, 9_000, "t", "attempt")?.unwrap();
            // The same user's update waits; another user's does not.
            assert_eq!(next_due(c, &q)?.unwrap().id, other);
            claim(c, other, "a", 2_000, 9_000, "t", "attempt")?.unwrap();
            assert!(next_due(c, &q)?.is_none());
            failures::resolve(c, create, 3_000, None, "t", "fixed")?;
            let q = DueQuery { now: 3_000, ..q };
            assert_eq!(next_due(c, &q)?.unwrap().id, update);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn due_claim_finish_cycle() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = open(c, "00u1", Operation::Create, 1_000);
            open(c, "00u2", Operation::Deactivate, 1_000);
            let q = |now| DueQuery {
                now,
                initial_backoff_ms: 500,
                ops: &OPS,
            };
            // Not due before first_seen + initial backoff; deactivations never.
            assert!(next_due(c, &q(1_499))?.is_none());
            assert_eq!(next_wakeup(c, &q(0))?, Some(1_500));
            let f = next_due(c, &q(1_500))?.unwrap();
            assert_eq!(f.id, id);
            let cl = claim(c, id, "a", 1_500, 9_000, "t", "attempt 1")?.unwrap();
            assert_eq!(cl.failure.state, State::Open);
            assert!(next_due(c, &q(1_600))?.is_none());
            assert_eq!(
                claim(c, id, "b", 1_600, 9_000, "t", "x")?,
                Err(NotClaimed::Busy {
                    by: "a".into(),
                    until: 9_000
                })
            );
            // b may not finish a's claim.
            let how = Finish::Requeue {
                kind: HistoryKind::RetryFailed,
                detail: "ERROR".into(),
                count_attempt: true,
                next_attempt_at: Some(5_000),
                exhausted: None,
            };
            assert_eq!(finish(c, id, "b", 1_700, "t", &how)?, Finished::NotHeld);
            assert_eq!(finish(c, id, "a", 1_700, "t", &how)?, Finished::Requeued);
            let f = failures::get(c, id)?.unwrap();
            assert_eq!(
                (f.state, f.attempts, f.next_attempt_at),
                (State::Open, 1, Some(5_000))
            );
            assert!(next_due(c, &q(4_999))?.is_none());
            assert!(next_due(c, &q(5_000))?.is_some());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn expired_lease_can_be_taken_over_and_prior_state_is_restored() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = open(c, "00u1", Operation::Update, 0);
            c.conn()
                .execute("UPDATE failures SET state = 'alerted' WHERE id = ?1", [id])?;
            claim(c, id, "a", 10, 100, "t", "x")?.unwrap();
            assert!(matches!(
                claim(c, id, "b", 99, 200, "t", "x")?,
                Err(NotClaimed::Busy { .. })
            ));
            let cl = claim(c, id, "b", 100, 200, "t", "x")?.unwrap();
            assert_eq!(cl.failure.state, State::Alerted);
            assert_eq!(
                finish(
                    c,
                    id,
                    "a",
                    150,
                    "t",
                    &Finish::Resolved {
                        detail: "late".into()
                    }
                )?,
                Finished::NotHeld
            );
            assert_eq!(release_all(c, "b", 150, "t")?, 1);
            let f = failures::get(c, id)?.unwrap();
            assert_eq!((f.state, f.attempts), (State::Alerted, 0));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn open_circuit_hides_its_app_but_offers_a_probe() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = open(c, "00u1", Operation::Update, 0);
            let q = DueQuery {
                now: 10_000,
                initial_backoff_ms: 1,
                ops: &OPS,
            };
            let mut ci = Circuit::closed("0oa1");
            ci.open = true;
            ci.next_probe_at = Some(20_000);
            circuits::save(c, &ci, 0)?;
            assert!(next_due(c, &q)?.is_none());
            assert!(circuits::due_probes(c, 10_000)?.is_empty());
            assert_eq!(circuits::due_probes(c, 20_000)?, vec!["0oa1".to_string()]);
            assert_eq!(probe_candidate(c, "0oa1", &q)?.unwrap().id, id);
            assert_eq!(next_wakeup(c, &q)?, Some(20_000));
            assert_eq!(circuits::get(c, "0oa1")?.unwrap(), ci);
            Ok(())
        })
        .unwrap();
    }
}
