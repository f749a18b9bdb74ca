//! Scenarios shared by the in-memory and the DynamoDB store tests (lease
//! and coordinator tables): both must behave identically.

use kinesis_fleet_leases::{
    CoordinatorStore, CoordinatorView, Error, ExtendedSequenceNumber, HashKeyRange, Lease,
    LeaseStore, Result, WorkerRecord, WorkerState,
};

pub(crate) fn cp(seq: &str, sub: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::parse(seq, sub).unwrap()
}

#[track_caller]
pub(crate) fn assert_lost(result: Result<Lease>, what: &str) {
    match result {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

/// Take -> checkpoint -> prepare -> checkpoint, fencing, handoff, shard end
/// and children, release, delete.
pub(crate) async fn lease_lifecycle(store: &dyn LeaseStore) {
    let fresh = Lease::new("shardId-000000000001", ExtendedSequenceNumber::TRIM_HORIZON)
        .with_parents(["shardId-000000000000"])
        .with_hash_key_range(HashKeyRange::new(0, u128::MAX / 2));
    assert!(store.create_lease_if_absent(&fresh).await.unwrap());
    assert!(!store.create_lease_if_absent(&fresh).await.unwrap());
    assert_eq!(
        store.get_lease(&fresh.lease_key).await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(store.get_lease("shardId-999").await.unwrap(), None);

    // Take, then checkpoint mid-aggregate.
    let held = store.take_lease(&fresh, "w1").await.unwrap();
    assert_eq!(held.lease_owner.as_deref(), Some("w1"));
    assert_eq!(held.lease_counter, 1);
    assert_eq!(held.owner_switches_since_checkpoint, 0);
    let c1 = cp(
        "49590338271490256608559692538361571095921575989136588898",
        2,
    );
    let after_cp = store.update_checkpoint(&held, "w1", &c1).await.unwrap();
    assert_eq!(
        (after_cp.checkpoint.clone(), after_cp.lease_counter),
        (c1.clone(), 2)
    );

    // Two-phase: prepare with state, then commit (pending attributes removed).
    let c2 = cp(
        "49590338271490256608559692538361571095921575989136588999",
        0,
    );
    let prepared = store
        .prepare_checkpoint(&after_cp, "w1", &c2, Some(b"\x01\x02state"))
        .await
        .unwrap();
    assert_eq!(prepared.pending_checkpoint.as_ref(), Some(&c2));
    assert_eq!(
        prepared.pending_checkpoint_state.as_deref(),
        Some(&b"\x01\x02state"[..])
    );
    assert_eq!(
        prepared.checkpoint, c1,
        "prepare does not move the checkpoint"
    );
    let committed = store.update_checkpoint(&prepared, "w1", &c2).await.unwrap();
    assert_eq!(committed.checkpoint, c2);
    assert_eq!(committed.pending_checkpoint, None);
    assert_eq!(committed.pending_checkpoint_state, None);
    let no_state = store
        .prepare_checkpoint(&committed, "w1", &c2, None)
        .await
        .unwrap();
    assert_eq!(no_state.pending_checkpoint_state, None);

    // Fencing: a stale counter or a non-owner loses.
    assert_lost(
        store.update_checkpoint(&held, "w1", &c2).await,
        "stale counter",
    );
    assert_lost(
        store.update_checkpoint(&no_state, "w2", &c2).await,
        "non-owner",
    );
    assert_lost(store.renew_lease(&held).await, "stale renew");
    assert_lost(store.take_lease(&held, "w2").await, "stale take");
    let renewed = store.renew_lease(&no_state).await.unwrap();
    assert_eq!(renewed.lease_counter, no_state.lease_counter + 1);

    // A steal counts an owner switch; a checkpoint resets it.
    let stolen = store.take_lease(&renewed, "w2").await.unwrap();
    assert_eq!(stolen.owner_switches_since_checkpoint, 1);
    assert_lost(
        store.update_checkpoint(&stolen, "w1", &c2).await,
        "previous owner",
    );
    let c3 = cp(
        "49590338271490256608559692538361571095921575989136589000",
        0,
    );
    let reset = store.update_checkpoint(&stolen, "w2", &c3).await.unwrap();
    assert_eq!(reset.owner_switches_since_checkpoint, 0);

    // Graceful handoff w2 -> w3: only w2 may checkpoint until it completes.
    let handing = store.initiate_handoff(&reset, "w3").await.unwrap();
    assert_eq!(handing.lease_owner.as_deref(), Some("w3"));
    assert_eq!(handing.checkpoint_owner.as_deref(), Some("w2"));
    assert_lost(
        store.update_checkpoint(&handing, "w3", &c3).await,
        "new owner during handoff",
    );
    let c4 = cp(
        "49590338271490256608559692538361571095921575989136589001",
        0,
    );
    let final_cp = store.update_checkpoint(&handing, "w2", &c4).await.unwrap();
    assert_eq!(
        final_cp.checkpoint_owner.as_deref(),
        Some("w2"),
        "checkpoint keeps the handoff"
    );
    assert_lost(
        store.complete_handoff(&final_cp, "w3").await,
        "wrong previous owner",
    );
    let handed = store.complete_handoff(&final_cp, "w2").await.unwrap();
    assert_eq!(handed.checkpoint_owner, None);
    assert_eq!(handed.lease_owner.as_deref(), Some("w3"));
    assert_lost(
        store.update_checkpoint(&handed, "w2", &c4).await,
        "old owner after handoff",
    );
    let w3_cp = store.update_checkpoint(&handed, "w3", &c4).await.unwrap();

    // The shard's end: SHARD_END, then its children recorded (sorted, once).
    let ended = store
        .update_checkpoint(&w3_cp, "w3", &ExtendedSequenceNumber::SHARD_END)
        .await
        .unwrap();
    assert!(matches!(
        store.set_child_shard_ids(&ended, &[]).await,
        Err(Error::InvalidArgument { .. })
    ));
    let children = [
        "shardId-000000000003".to_owned(),
        "shardId-000000000002".to_owned(),
    ];
    assert_lost(
        store.set_child_shard_ids(&w3_cp, &children).await,
        "stale view",
    );
    let with_children = store.set_child_shard_ids(&ended, &children).await.unwrap();
    assert_eq!(
        with_children.child_shard_ids,
        ["shardId-000000000002", "shardId-000000000003"]
    );
    assert_eq!(with_children.lease_counter, ended.lease_counter + 1);
    assert_eq!(
        store.get_lease(&fresh.lease_key).await.unwrap(),
        Some(with_children.clone())
    );
    // Recorded again from a stale view: re-read, already there, nothing written.
    kinesis_fleet_leases::record_child_shards(store, &fresh.lease_key, &children)
        .await
        .unwrap();
    assert_eq!(
        store.get_lease(&fresh.lease_key).await.unwrap(),
        Some(with_children.clone())
    );

    // Release, then delete conditionally (deleting twice is fine).
    let released = store.release_lease(&with_children).await.unwrap();
    assert_eq!(released.lease_owner, None);
    assert_eq!(released.checkpoint, ExtendedSequenceNumber::SHARD_END);
    assert!(matches!(
        store.delete_lease(&w3_cp).await,
        Err(Error::LeaseLost { .. })
    ));
    store.delete_lease(&released).await.unwrap();
    store.delete_lease(&released).await.unwrap();
    assert_eq!(store.get_lease(&fresh.lease_key).await.unwrap(), None);
    assert_lost(store.take_lease(&released, "w1").await, "deleted lease");
}

/// Heartbeats, the whole-table read, the leader item read alone (with the
/// leader's heartbeat counter it records) and leadership's conditions.
pub(crate) async fn coordinator_lifecycle(store: &dyn CoordinatorStore) {
    store.ensure_table().await.unwrap();
    assert_eq!(store.read().await.unwrap(), CoordinatorView::default());
    assert_eq!(store.read_leader().await.unwrap(), None, "no leader yet");
    let worker = |id: &str, counter| WorkerRecord {
        worker_id: id.to_owned(),
        heartbeat_counter: counter,
        heartbeat_at_ms: 1_700_000_000_000 + counter,
        started_at_ms: 1_700_000_000_000,
        state: WorkerState::Running,
        assignments_seen: counter / 2,
    };
    store.put_worker(&worker("w1", 3)).await.unwrap();
    store.put_worker(&worker("w2", 1)).await.unwrap();
    let a = store.claim_leader("w1", None, 3, 10).await.unwrap();
    assert_eq!(
        (a.leader_id.as_str(), a.leader_counter, a.heartbeat_counter),
        ("w1", 1, 3)
    );
    assert!(
        store.claim_leader("w2", None, 1, 10).await.is_err(),
        "taken"
    );
    store.put_worker(&worker("w1", 4)).await.unwrap();
    let a2 = store.renew_leader(&a, 4, 11, true).await.unwrap();
    assert_eq!(
        (a2.leader_counter, a2.heartbeat_counter, a2.assignments_at),
        (2, 4, 2)
    );
    assert_eq!(store.read_leader().await.unwrap(), Some(a2.clone()));
    let view = store.read().await.unwrap();
    assert_eq!(view.leader, Some(a2.clone()));
    assert_eq!(
        view.workers.values().cloned().collect::<Vec<_>>(),
        [worker("w1", 4), worker("w2", 1)]
    );
    assert!(
        store.renew_leader(&a, 5, 12, false).await.is_err(),
        "stale view"
    );
    assert!(
        store.claim_leader("w2", Some(&a), 1, 12).await.is_err(),
        "stale expiry"
    );
    let b = store.claim_leader("w2", Some(&a2), 2, 13).await.unwrap();
    assert_eq!((b.leader_counter, b.heartbeat_counter), (3, 2));
    assert_eq!(store.read_leader().await.unwrap(), Some(b.clone()));
    store.resign_leader(&a2).await.unwrap();
    assert_eq!(store.read_leader().await.unwrap(), Some(b.clone()), "no-op");
    store.resign_leader(&b).await.unwrap();
    assert_eq!(store.read_leader().await.unwrap(), None);
    store.delete_worker("w1").await.unwrap();
    store.delete_worker("w1").await.unwrap();
    let view = store.read().await.unwrap();
    assert_eq!(
        (
            view.leader,
            view.workers.keys().cloned().collect::<Vec<_>>()
        ),
        (None, vec!["w2".to_owned()])
    );
}
