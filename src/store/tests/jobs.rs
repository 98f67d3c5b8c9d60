//! Scheduled jobs: written with their batch, due by their account's clock,
//! claimed with leases, finished only under a lease still held, retried,
//! rescheduled, cancelled, and kept across a reopen.

use super::*;

conformance!(
    jobs_commit_with_their_batch,
    jobs_are_due_by_their_accounts_clock,
    concurrent_job_claims_are_disjoint,
    an_expired_job_lease_is_claimable_again,
    finishing_with_a_lost_lease_conflicts,
    a_lost_lease_fails_its_batch_alone_in_a_group,
    rescheduling_replaces_the_job,
    failed_jobs_wait_for_their_retry,
    cancelled_jobs_go_whoever_holds_them,
    reopen_keeps_jobs,
);

const SETTLE: &str = "payment_intent.settle";

fn job_id(object: &str) -> JobId {
    JobId {
        kind: SETTLE.to_string(),
        object: object.to_string(),
    }
}

fn schedule(object: &str, due_at: i64) -> JobSchedule {
    JobSchedule {
        job: job_id(object),
        due_at,
        clock: None,
    }
}

/// A batch of `objects` that schedules `jobs`.
fn scheduling(account: &str, objects: Vec<ObjectWrite>, jobs: Vec<JobSchedule>) -> WriteBatch {
    WriteBatch {
        jobs,
        ..batch(account, objects)
    }
}

/// A batch of `objects` that finishes the job `lease` holds.
fn finishing(account: &str, objects: Vec<ObjectWrite>, lease: &JobLease) -> WriteBatch {
    let mut batch = batch(account, objects);
    batch.finish_job(lease.clone());
    batch
}

fn job_claim(owner: &str, now_ms: i64, lease_ms: i64, limit: usize) -> JobClaim {
    JobClaim {
        owner: owner.to_string(),
        now_ms,
        lease_ms,
        limit,
    }
}

/// What `owner` claims at `now_ms`.
async fn claimed(
    store: &DynStore,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Vec<ScheduledJob> {
    let claim = job_claim(owner, now_ms, lease_ms, limit);
    store.claim_jobs(&claim).await.expect("claim_jobs")
}

/// Nothing is runnable at `now_ms`.
async fn assert_none_runnable(store: &DynStore, now_ms: i64) {
    let got = claimed(store, "node_probe", now_ms, 1, 100).await;
    assert!(
        got.is_empty(),
        "runnable at {now_ms}: {:?}",
        objects_of(&got)
    );
}

/// Schedules jobs (object, due at) in `account` with a batch of their own.
async fn schedule_in(store: &DynStore, account: &str, jobs: &[(&str, i64)]) -> Committed {
    let jobs = jobs
        .iter()
        .map(|(object, due)| schedule(object, *due))
        .collect();
    commit_ok(store, scheduling(account, vec![], jobs)).await
}

async fn runnable_at(store: &DynStore, account: &str, object: &str) -> Option<i64> {
    must_job(store, account, object).await.runnable_at
}

/// The objects of claimed jobs, sorted.
fn objects_of(jobs: &[ScheduledJob]) -> Vec<String> {
    let mut objects: Vec<String> = jobs.iter().map(|j| j.job.object.clone()).collect();
    objects.sort();
    objects
}

async fn find_job(store: &DynStore, account: &str, object: &str) -> Option<ScheduledJob> {
    store.job(account, &job_id(object)).await.expect("job")
}

async fn must_job(store: &DynStore, account: &str, object: &str) -> ScheduledJob {
    find_job(store, account, object)
        .await
        .unwrap_or_else(|| panic!("{object}'s job should exist in {account}"))
}

/// `pi_1` of `acct_a`, due at 1,000 s, claimed by node_a then, and released by
/// it for a retry at `retry_at_ms` with `error`; the lease it had.
async fn failed_once(store: &DynStore, retry_at_ms: i64, error: &str) -> JobLease {
    schedule_in(store, "acct_a", &[("pi_1", 1_000)]).await;
    let got = claimed(store, "node_a", 1_000_000, 1_000, 10).await;
    let lease = lease_of(&got[0]);
    assert!(store
        .retry_job(&lease, retry_at_ms, error)
        .await
        .expect("retry"));
    lease
}

/// The lease a claim gave `job`.
fn lease_of(job: &ScheduledJob) -> JobLease {
    job.lease().expect("a claimed job holds a lease")
}

/// A job commits with the objects of its batch, due on the account's clock
/// (unstored accounts run at offset 0), and a batch that fails leaves none.
async fn jobs_commit_with_their_batch(f: &Fixture) {
    let s = &f.store;
    let before = now_ms();
    let committed = commit_ok(
        s,
        scheduling(
            "acct_a",
            vec![new_object("pi_1", "payment_intent", 1)],
            vec![schedule("pi_1", 5_000), schedule("pi_2", 4_000)],
        ),
    )
    .await;
    let after = now_ms();
    assert_eq!(
        committed.scheduled,
        Some(4_000_000),
        "the earliest runnable time"
    );
    let job = must_job(s, "acct_a", "pi_1").await;
    assert_eq!(
        (
            job.account.as_str(),
            job.due_at,
            job.clock.as_deref(),
            job.runnable_at,
            job.attempts
        ),
        ("acct_a", 5_000, None, Some(5_000_000), 0)
    );
    assert_eq!((job.lease_owner, job.lease_expires_at), (None, None));
    assert_eq!(job.last_error, None);
    assert!((before..=after).contains(&job.created_at));
    assert!(
        find_job(s, "acct_b", "pi_1").await.is_none(),
        "jobs are per account"
    );
    assert_eq!(s.next_job_at().await.expect("next"), Some(4_000_000));

    // A job alone is a batch to commit.
    let alone = schedule_in(s, "acct_a", &[("pi_3", 6_000)]).await;
    assert_eq!(alone.scheduled, Some(6_000_000));
    assert!(find_job(s, "acct_a", "pi_3").await.is_some());

    // A stale update fails its batch, and the job with it.
    let current = must_get(s, "acct_a", "pi_1").await;
    commit_ok(
        s,
        batch("acct_a", vec![update_of(&current, 1, r#"{"v":2}"#)]),
    )
    .await;
    let stale = scheduling(
        "acct_a",
        vec![update_of(&current, 1, r#"{"v":3}"#)],
        vec![schedule("pi_lost", 1_000)],
    );
    assert_conflict(s.commit(stale).await, "pi_1");
    assert!(find_job(s, "acct_a", "pi_lost").await.is_none());
    // So does a taken idempotency key.
    let keyed = |job: &str| WriteBatch {
        idempotency: Some(record("key_1", "fp", 200, "{}", 10)),
        ..scheduling("acct_a", vec![], vec![schedule(job, 1_000)])
    };
    commit_ok(s, keyed("pi_keyed")).await;
    assert!(matches!(
        s.commit(keyed("pi_unkeyed")).await,
        Err(CommitError::IdempotencyTaken)
    ));
    assert!(find_job(s, "acct_a", "pi_unkeyed").await.is_none());

    // A job on a test clock waits for that clock: never runnable by real time.
    let on_clock = JobSchedule {
        clock: Some("clock_1".to_string()),
        ..schedule("pi_clocked", 1)
    };
    let committed = commit_ok(s, scheduling("acct_c", vec![], vec![on_clock])).await;
    assert_eq!(committed.scheduled, None);
    let job = must_job(s, "acct_c", "pi_clocked").await;
    assert_eq!(
        (job.clock.as_deref(), job.runnable_at),
        (Some("clock_1"), None)
    );
    let everything = claimed(s, "node_a", i64::MAX / 2, 1_000, 100).await;
    assert!(!objects_of(&everything).contains(&"pi_clocked".to_string()));
}

/// Jobs run by their account's clock: moving it makes the jobs it passes runnable
/// at once, other accounts' jobs, held ones and those on a test clock stay as
/// they were, and jobs scheduled later are due by the moved clock.
async fn jobs_are_due_by_their_accounts_clock(f: &Fixture) {
    let s = &f.store;
    for id in ["acct_a", "acct_b"] {
        s.create_account(&test_account(id, 1))
            .await
            .expect("create_account");
    }
    let on_clock = JobSchedule {
        clock: Some("clock_1".to_string()),
        ..schedule("pi_clocked", 1)
    };
    commit_ok(
        s,
        scheduling(
            "acct_a",
            vec![],
            vec![
                schedule("pi_due", 1_000),
                schedule("pi_later", 5_000),
                schedule("pi_held", 1_500),
                on_clock,
            ],
        ),
    )
    .await;
    schedule_in(s, "acct_b", &[("pi_b", 5_000)]).await;
    assert_eq!(s.next_job_at().await.expect("next"), Some(1_000_000));
    assert_none_runnable(s, 999_999).await;
    let due = claimed(s, "node_a", 1_000_000, 100_000_000, 10).await;
    assert_eq!(objects_of(&due), ids(&["pi_due"]));
    let held = claimed(s, "node_h", 1_500_000, 10_000_000, 10).await;
    assert_eq!(objects_of(&held), ids(&["pi_held"]));

    // 3,000 seconds ahead: pi_later (due at 5,000) is runnable from 2,000.
    s.set_clock_offset("acct_a", 3_000).await.expect("clock");
    let later = must_job(s, "acct_a", "pi_later").await;
    assert_eq!((later.due_at, later.runnable_at), (5_000, Some(2_000_000)));
    assert_eq!(
        runnable_at(s, "acct_b", "pi_b").await,
        Some(5_000_000),
        "another account's clock did not move"
    );
    assert_eq!(
        runnable_at(s, "acct_a", "pi_held").await,
        Some(11_500_000),
        "a held job keeps its lease"
    );
    assert_eq!(runnable_at(s, "acct_a", "pi_clocked").await, None);
    // The clock only moves forward: a smaller offset changes nothing.
    s.set_clock_offset("acct_a", 1_000).await.expect("clock");
    assert_eq!(runnable_at(s, "acct_a", "pi_later").await, Some(2_000_000));
    assert_none_runnable(s, 1_999_999).await;
    let moved = claimed(s, "node_a", 2_000_000, 100_000_000, 10).await;
    assert_eq!(objects_of(&moved), ids(&["pi_later"]));

    // Scheduled after the move: due at 6,000 on a clock 3,000 ahead.
    schedule_in(s, "acct_a", &[("pi_new", 6_000)]).await;
    assert_eq!(runnable_at(s, "acct_a", "pi_new").await, Some(3_000_000));
    let rest = claimed(s, "node_a", 5_000_000, 1_000, 10).await;
    assert_eq!(objects_of(&rest), ids(&["pi_b", "pi_new"]));
}

/// Claimers at once get disjoint jobs, each stored as leased to its claimer, and
/// between them every runnable job.
async fn concurrent_job_claims_are_disjoint(f: &Fixture) {
    let s = &f.store;
    for account in ["acct_a", "acct_b", "acct_c"] {
        let jobs = (0..20)
            .map(|i| schedule(&format!("pi_{account}_{i}"), 1_000 + i))
            .collect();
        commit_ok(s, scheduling(account, vec![], jobs)).await;
    }
    let claims = (0..4).map(|n| {
        let store = s.clone();
        async move {
            let owner = format!("node_{n}");
            let got = claimed(&store, &owner, 1_000_000 + 30_000, 60_000, 20).await;
            (owner, got)
        }
    });
    let results = futures::future::join_all(claims).await;
    let mut seen = std::collections::HashSet::new();
    for (owner, got) in &results {
        assert!(got.len() <= 20);
        for job in got {
            assert!(
                seen.insert((job.account.clone(), job.job.object.clone())),
                "{} leased twice",
                job.job.object
            );
            let stored = must_job(s, &job.account, &job.job.object).await;
            assert_eq!(stored.lease_owner.as_deref(), Some(owner.as_str()));
            assert_eq!(stored.attempts, 1);
        }
    }
    let rest = claimed(s, "node_last", 1_030_000, 60_000, 100).await;
    for job in &rest {
        assert!(seen.insert((job.account.clone(), job.job.object.clone())));
    }
    assert_eq!(seen.len(), 60);
    assert_none_runnable(s, 1_030_000).await;
}

/// A claim holds its job until its lease runs out; then another claim takes it,
/// counting a second attempt.
async fn an_expired_job_lease_is_claimable_again(f: &Fixture) {
    let s = &f.store;
    schedule_in(s, "acct_a", &[("pi_1", 1_000)]).await;
    let got = claimed(s, "node_a", 1_000_000, 1_000, 10).await;
    assert_eq!(got.len(), 1);
    let job = &got[0];
    assert_eq!(
        (
            job.lease_owner.as_deref(),
            job.lease_expires_at,
            job.runnable_at,
            job.attempts
        ),
        (Some("node_a"), Some(1_001_000), Some(1_001_000), 1)
    );
    assert_eq!(s.next_job_at().await.expect("next"), Some(1_001_000));
    assert_none_runnable(s, 1_000_999).await;
    let again = claimed(s, "node_b", 1_001_000, 1_000, 10).await;
    assert_eq!(objects_of(&again), ids(&["pi_1"]));
    assert_eq!(
        (again[0].lease_owner.as_deref(), again[0].attempts),
        (Some("node_b"), 2)
    );
}

/// Finishing a job commits the handler's writes and removes the job while the
/// lease is held, even after it ran out if no one took it over; a finish whose
/// lease another claim took fails as a conflict and writes nothing.
async fn finishing_with_a_lost_lease_conflicts(f: &Fixture) {
    let s = &f.store;
    let pi = insert(s, "acct_a", new_object("pi_1", "payment_intent", 1)).await;
    schedule_in(s, "acct_a", &[("pi_1", 1_000), ("pi_2", 1_000)]).await;
    let got = claimed(s, "node_a", 1_000_000, 1_000, 10).await;
    let a1 = lease_of(got.iter().find(|j| j.job.object == "pi_1").expect("pi_1"));
    let a2 = lease_of(got.iter().find(|j| j.job.object == "pi_2").expect("pi_2"));
    let taken = claimed(s, "node_b", 1_001_000, 1_000, 1).await;
    assert_eq!(taken.len(), 1);
    let (lost, kept) = if taken[0].job.object == "pi_1" {
        (a1, a2)
    } else {
        (a2, a1)
    };
    let b = lease_of(&taken[0]);

    let settle = |version: i64, data: &str| update_of(&pi, version, data);
    match s
        .commit(finishing("acct_a", vec![settle(1, r#"{"by":"a"}"#)], &lost))
        .await
    {
        Err(CommitError::Conflict(on)) => assert_eq!(on, lost.label()),
        other => panic!("expected a conflict on the lost lease, got {other:?}"),
    }
    assert_eq!(
        must_get(s, "acct_a", "pi_1").await.version,
        1,
        "nothing written"
    );
    let still = must_job(s, "acct_a", &lost.job.object).await;
    assert_eq!(still.lease_owner.as_deref(), Some("node_b"));

    commit_ok(s, finishing("acct_a", vec![settle(1, r#"{"by":"b"}"#)], &b)).await;
    assert_eq!(must_get(s, "acct_a", "pi_1").await.version, 2);
    assert!(find_job(s, "acct_a", &b.job.object).await.is_none());
    // Finishing a job no longer there conflicts too.
    assert!(matches!(
        s.commit(finishing("acct_a", vec![], &b)).await,
        Err(CommitError::Conflict(on)) if on == b.label()
    ));
    // The other job's lease ran out unclaimed: its holder still finishes it.
    commit_ok(s, finishing("acct_a", vec![], &kept)).await;
    assert!(find_job(s, "acct_a", &kept.job.object).await.is_none());
    assert_eq!(s.next_job_at().await.expect("next"), None);
}

/// Batches committed as one group: the one whose lease was lost fails alone, the
/// others finish and schedule their jobs.
async fn a_lost_lease_fails_its_batch_alone_in_a_group(f: &Fixture) {
    let s = &f.store;
    let jobs = (1..=4)
        .map(|i| schedule(&format!("pi_{i}"), 1_000))
        .collect();
    commit_ok(s, scheduling("acct_a", vec![], jobs)).await;
    let got = claimed(s, "node_a", 1_000_000, 1_000, 10).await;
    let leases: Vec<JobLease> = {
        let mut leases: Vec<JobLease> = got.iter().map(lease_of).collect();
        leases.sort_by(|a, b| a.job.object.cmp(&b.job.object));
        leases
    };
    // pi_1 is scheduled again and claimed by node_b: node_a's lease is lost.
    schedule_in(s, "acct_a", &[("pi_1", 1_000)]).await;
    let stolen = claimed(s, "node_b", 1_000_000, 1_000, 1).await;
    assert_eq!(objects_of(&stolen), ids(&["pi_1"]));

    let hold = Hold::start(f, "jobs").await;
    let group = {
        let s = s.clone();
        let leases = leases.clone();
        tokio::spawn(async move {
            let done = |i: usize, lease: &JobLease| {
                let mut batch = scheduling(
                    "acct_a",
                    vec![new_object(&format!("ch_{i}"), "charge", 1)],
                    vec![schedule(&format!("pi_next_{i}"), 2_000)],
                );
                batch.finish_job(lease.clone());
                batch
            };
            futures::join!(
                s.commit(done(1, &leases[0])),
                s.commit(done(2, &leases[1])),
                s.commit(done(3, &leases[2])),
                s.commit(done(4, &leases[3])),
            )
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hold.release().await;
    let (one, two, three, four) = group.await.expect("group task");
    assert!(
        matches!(&one, Err(CommitError::Conflict(on)) if *on == leases[0].label()),
        "{one:?}"
    );
    for (name, outcome) in [("pi_2", &two), ("pi_3", &three), ("pi_4", &four)] {
        match outcome {
            Ok(committed) => assert_eq!(committed.scheduled.map(|at| at <= 2_000_000), Some(true)),
            Err(e) => panic!("{name}: {e:?}"),
        }
    }
    assert!(s.get("acct_a", "ch_1").await.expect("get").is_none());
    assert!(find_job(s, "acct_a", "pi_next_1").await.is_none());
    assert_eq!(
        must_job(s, "acct_a", "pi_1").await.lease_owner.as_deref(),
        Some("node_b")
    );
    for i in 2..=4 {
        assert!(find_job(s, "acct_a", &format!("pi_{i}")).await.is_none());
        must_get(s, "acct_a", &format!("ch_{i}")).await;
        must_job(s, "acct_a", &format!("pi_next_{i}")).await;
    }
}

/// Scheduling a job again replaces it: its due time, and its lease and attempts
/// start over, so the claim that held it can no longer finish it.
async fn rescheduling_replaces_the_job(f: &Fixture) {
    let s = &f.store;
    failed_once(s, 1_000_500, "the first run failed").await;
    let got = claimed(s, "node_a", 1_000_500, 1_000, 10).await;
    let lease = lease_of(&got[0]);
    assert_eq!(got[0].attempts, 2);

    let created = must_job(s, "acct_a", "pi_1").await.created_at;
    schedule_in(s, "acct_a", &[("pi_1", 7_000)]).await;
    let job = must_job(s, "acct_a", "pi_1").await;
    assert_eq!(
        (
            job.due_at,
            job.runnable_at,
            job.lease_owner,
            job.attempts,
            job.last_error
        ),
        (7_000, Some(7_000_000), None, 0, None)
    );
    assert_eq!(job.created_at, created, "still the job first scheduled");
    assert!(matches!(
        s.commit(finishing("acct_a", vec![], &lease)).await,
        Err(CommitError::Conflict(_))
    ));
    assert!(find_job(s, "acct_a", "pi_1").await.is_some());

    // A handler may schedule its own job again: the batch finishes it first.
    let got = claimed(s, "node_b", 7_000_000, 1_000, 10).await;
    let lease = lease_of(&got[0]);
    let mut again = scheduling("acct_a", vec![], vec![schedule("pi_1", 9_000)]);
    again.finish_job(lease);
    commit_ok(s, again).await;
    let job = must_job(s, "acct_a", "pi_1").await;
    assert_eq!(
        (job.due_at, job.lease_owner, job.attempts),
        (9_000, None, 0)
    );
}

/// A failed job is released with its error, runnable at its retry time; a
/// retry whose lease was lost changes nothing.
async fn failed_jobs_wait_for_their_retry(f: &Fixture) {
    let s = &f.store;
    let lease = failed_once(s, 1_005_000, "store unavailable").await;
    let job = must_job(s, "acct_a", "pi_1").await;
    assert_eq!(
        (
            job.lease_owner.as_deref(),
            job.runnable_at,
            job.attempts,
            job.last_error.as_deref()
        ),
        (None, Some(1_005_000), 1, Some("store unavailable"))
    );
    assert_eq!(s.next_job_at().await.expect("next"), Some(1_005_000));
    assert!(
        !s.retry_job(&lease, 1_000_001, "again")
            .await
            .expect("retry"),
        "the lease went with the retry"
    );
    assert_eq!(runnable_at(s, "acct_a", "pi_1").await, Some(1_005_000));
    assert_none_runnable(s, 1_004_999).await;
    let again = claimed(s, "node_b", 1_005_000, 1_000, 10).await;
    assert_eq!(
        (
            again.len(),
            again[0].attempts,
            again[0].last_error.as_deref()
        ),
        (1, 2, Some("store unavailable"))
    );
}

/// A batch that cancels a job removes it whoever holds it (its holder's finish
/// then conflicts); cancelling a job that is not there is no failure.
async fn cancelled_jobs_go_whoever_holds_them(f: &Fixture) {
    let s = &f.store;
    schedule_in(s, "acct_a", &[("pi_1", 1_000), ("pi_2", 1_000)]).await;
    let got = claimed(s, "node_a", 1_000_000, 1_000, 1).await;
    let lease = lease_of(&got[0]);
    let cancel = |objects: &[&str]| WriteBatch {
        cancelled_jobs: objects.iter().map(|o| job_id(o)).collect(),
        ..batch("acct_a", vec![])
    };
    commit_ok(s, cancel(&["pi_1", "pi_2", "pi_none"])).await;
    assert!(find_job(s, "acct_a", "pi_1").await.is_none());
    assert!(find_job(s, "acct_a", "pi_2").await.is_none());
    assert!(matches!(
        s.commit(finishing("acct_a", vec![], &lease)).await,
        Err(CommitError::Conflict(_))
    ));
    // Another account's job of the same object is its own.
    schedule_in(s, "acct_b", &[("pi_1", 1_000)]).await;
    commit_ok(s, cancel(&["pi_1"])).await;
    assert!(find_job(s, "acct_b", "pi_1").await.is_some());
}

/// A reopened store keeps its jobs, due and held, and claims them as before.
async fn reopen_keeps_jobs(f: &Fixture) {
    let s = &f.store;
    schedule_in(s, "acct_a", &[("pi_1", 1_000), ("pi_2", 2_000)]).await;
    let got = claimed(s, "node_a", 1_000_000, 5_000, 10).await;
    assert_eq!(objects_of(&got), ids(&["pi_1"]));

    let again = f.location.open().await;
    let held = must_job(&again, "acct_a", "pi_1").await;
    assert_eq!(
        (held.lease_owner.as_deref(), held.runnable_at, held.attempts),
        (Some("node_a"), Some(1_005_000), 1)
    );
    assert_eq!(runnable_at(&again, "acct_a", "pi_2").await, Some(2_000_000));
    assert_eq!(again.next_job_at().await.expect("next"), Some(1_005_000));
    let later = claimed(&again, "node_b", 2_000_000, 5_000, 10).await;
    assert_eq!(objects_of(&later), ids(&["pi_1", "pi_2"]));
    commit_ok(&again, finishing("acct_a", vec![], &lease_of(&later[0]))).await;
}
