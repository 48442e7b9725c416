// Package crdt is the CRDT consensus: the shared pinset is a go-ds-crdt
// Merkle-CRDT whose new heads are announced on a gossipsub topic and whose
// DAG blocks are exchanged with bitswap over the cluster host. There is no
// leader: every peer commits on its own and merges what the others commit.
// Pins are stored in the CRDT under "/<cid>" as the api.Pin binary encoding.
//
// # Storage
//
// Everything lives in the peer's state database (state.DB), shared through
// go-ds-pebble, under the datastore namespace (default "/c"):
//
//	<ns>/s/..., <ns>/h/..., <ns>/b/<mh>, <ns>/d   go-ds-crdt: set, heads, processed blocks, dirty bit
//	<ns>/b/blocks/<mh>                           DAG blocks (boxo blockstore)
//	<ns>/a/<key>                                 apply markers: committed changes not yet given to the Applier
//	<ns>/r                                       the journal position up to which every operation is resolved
//	<ns>/o                                       open marker: present while a Consensus runs on the database
//
// and the journal is a folder of its own inside the database's folder
// ("crdt-journal-<ns>"). The go-ds-pebble wrapper writes without syncing and
// is never closed: the state package owns the database. pebble keeps
// unsynced writes in the process's memory until its WAL writer gets to
// them, so they can die with the process; the journal is what makes an
// acknowledgement durable.
//
// # Durable acknowledgement
//
// Every LogPin and LogUnpin is in the journal (see journal) before it is
// acknowledged. The journal is written with plain writes, one per group of
// operations, so an acknowledged operation survives any crash of the
// process (kill -9, an out-of-memory kill, a panic). With fsync_acks the
// acknowledgement also waits for the journal's fsync, shared by the
// operations of the moment, so it survives a power failure too; without,
// the journal is fsynced in the background every few milliseconds, and by
// the time of the acknowledgement the delta has been announced to the other
// peers as well.
//
// Without batching, callers wait for a group commit: one goroutine
// journals the operations waiting at that moment, commits them as one CRDT
// delta, and each caller applies its change locally and returns. A lone
// operation is committed at once; under load, deltas grow instead of the
// DAG, which keeps the DAG shallow for peers that walk it.
//
// With batching, LogPin returns once its operation is journaled, and a
// batch is committed when max_batch_size operations wait or max_batch_age
// after the first one.
//
// After each commit (or a group commit that failed, which its callers were
// told about) the journal position of its last operation is written to
// <ns>/r, unsynced: pebble's writes reach the disk in order, so after a
// crash it never claims more than what survived. Every second pebble's WAL
// is synced and the journal drops the segments that hold only resolved
// operations. On start, New commits again every journaled operation past
// <ns>/r, in order, a delta per thousand (state import journals the pins
// it imports so that this start commits them). So an acknowledged operation whose CRDT commit was lost
// or only partly written when the peer died (a delta in the set but never
// announced) is committed again and reaches the other peers. Re-committing
// an operation that did reach the DAG is harmless: putting the same value
// is not an effective change, and removing an absent key adds no
// tombstone.
//
// # Applying changes
//
// go-ds-crdt's PutHook fires before its write batch is committed, its
// DeleteHook fires even when the element is still present with another
// value, and neither says what the previous value was. Instead, this
// package observes the CRDT's own writes: the materialized value of each
// element (<ns>/s/k/<key>/v) is read before and compared after every commit
// that touches it, under a per-key lock, so the Applier hears exactly the
// effective changes (ApplyPin with the new value, ApplyUnpin with the old
// one) in commit order. The change is recorded as an apply marker in the
// same pebble batch as the CRDT write, so a crash between commit and apply
// is made good on the next start, and apply workers hand the markers to the
// Applier concurrently (sharing its fsyncs).
//
// go-ds-crdt merges a delta by reading a key's elements and priorities and
// then writing a batch, without serialising tombstones against elements;
// concurrent merges of the same key can then leave a value that no other
// peer has. The observed store therefore serialises every batch from its
// creation to its commit (mergeLock).
//
// # Announcements, trust, catch-up and repair
//
// Head announcements carry the blocks of the heads they announce and are
// coalesced (see broadcaster), so a peer that keeps up merges new deltas
// without a bitswap round trip. A topic validator drops announcements whose
// signer is not trusted; blocks are only ever fetched because a trusted head
// links to them, so an untrusted peer's changes are never merged. A peer
// that joins late or comes back learns the heads at once, because every
// peer announces its heads when another joins the topic (and from the
// periodic rebroadcast, rebroadcast_interval), and walks the DAG from them
// a branch of up to thousands of nodes per round trip (see branchExchange),
// with bitswap as the fallback; a request names the asker's heads, so a
// peer that only missed an announcement gets the few nodes it lacks.
// Fetches give up after dag_sync_timeout; a branch that could not be
// fetched marks the store dirty, and a dirty store (or one that was not
// shut down cleanly) is repaired promptly: the first repair runs within one
// rebroadcast interval, and retries back off to repair_interval. go-ds-crdt
// marks a node processed as soon as its delta is merged but makes the
// branch's head a head only once the walk reaches known nodes, and its
// repair walks from the heads: a walk cut short would leave processed
// nodes that nothing leads to, above deltas never merged. So a repair
// (which follows every unclean stop) first unmarks the processed nodes that
// no head leads to (see sweepOrphans); the next announcement walks them
// again.
package crdt
