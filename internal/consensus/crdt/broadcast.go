package crdt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/boxo/blockservice"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	crdt "github.com/ipfs/go-ds-crdt"
	"github.com/ipfs/go-ds-crdt/pb"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"ipfs-cluster/internal/p2p"
)

// Announcements carry the blocks of the heads they announce, up to
// maxAttached bytes (gossipsub's default message limit is 1 MiB): a peer
// that keeps up merges new heads without fetching anything, instead of one
// bitswap round trip per DAG node. Larger blocks, and the rest of a branch,
// are fetched by the block service (see branchExchange).
//
// The heads go-ds-crdt asks to broadcast are coalesced: an announcement
// leaves at once unless one left less than announceInterval ago, and then
// carries every head (and block) gathered meanwhile, newest first so that
// the receiver's walk from the first one covers the others. A burst of
// commits so makes a few large messages instead of thousands that overflow
// gossipsub's queues (gossipsub drops what does not fit).
//
// Wire format (version 1):
//
//	0x01
//	uvarint len, go-ds-crdt broadcast (the head CIDs)
//	uvarint n, then n times: uvarint len, CID bytes; uvarint len, block
const (
	envelopeVersion  byte = 1
	maxAttached           = 256 << 10
	announceInterval      = 5 * time.Millisecond
	// welcomeInterval is the least time between two announcements made
	// because peers joined; a joined peer that pubsub does not list yet
	// is looked for every welcomeCheck for up to welcomeWait.
	welcomeInterval = time.Second
	welcomeCheck    = 50 * time.Millisecond
	welcomeWait     = 10 * time.Second
	// subscriptionBuffer holds announcements while go-ds-crdt merges:
	// pubsub drops what does not fit.
	subscriptionBuffer = 1024
)

// errBadAnnouncement marks an announcement that does not decode or whose
// blocks do not match their CIDs.
var errBadAnnouncement = errors.New("malformed head announcement")

// broadcaster carries go-ds-crdt's head announcements over a pubsub topic.
// Broadcast and Next may be called concurrently; close must be called once,
// after the CRDT store stopped calling Broadcast and Next.
type broadcaster struct {
	ps    *pubsub.PubSub
	name  string
	self  peer.ID
	bserv blockservice.BlockService
	log   zerolog.Logger
	topic *pubsub.Topic
	sub   *pubsub.Subscription

	mu       sync.Mutex
	pending  []cid.Cid // heads to announce, oldest first
	queued   map[cid.Cid]struct{}
	wake     chan struct{}
	done     chan struct{} // closed by close: announce what is pending, then stop
	stopped  chan struct{}
	welcomed chan struct{} // closed when welcome's loop ends; nil without it
}

// joinTopic registers validate on the topic, then joins and subscribes to
// it, so that no announcement is delivered unvalidated. Attached blocks are
// read from and stored into bserv.
func joinTopic(ps *pubsub.PubSub, name string, self peer.ID, validate pubsub.ValidatorEx, bserv blockservice.BlockService, log zerolog.Logger) (*broadcaster, error) {
	if err := ps.RegisterTopicValidator(name, validate); err != nil {
		return nil, fmt.Errorf("register validator on topic %s: %w", name, err)
	}
	topic, err := ps.Join(name)
	if err != nil {
		_ = ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("join topic %s: %w", name, err)
	}
	sub, err := topic.Subscribe(pubsub.WithBufferSize(subscriptionBuffer))
	if err != nil {
		_ = topic.Close()
		_ = ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("subscribe to topic %s: %w", name, err)
	}
	b := &broadcaster{
		ps: ps, name: name, self: self, bserv: bserv, log: log, topic: topic, sub: sub,
		queued:  map[cid.Cid]struct{}{},
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go b.announceLoop()
	return b, nil
}

// Broadcast queues heads for the next announcement. It does not wait for
// it: go-ds-crdt would only log a failure, and the periodic rebroadcast
// covers lost announcements.
func (b *broadcaster) Broadcast(_ context.Context, data []byte) error {
	var bcast pb.CRDTBroadcast
	if err := proto.Unmarshal(data, &bcast); err != nil {
		return fmt.Errorf("decode heads to announce: %w", err)
	}
	heads := make([]cid.Cid, 0, len(bcast.Heads))
	for _, h := range bcast.Heads {
		c, err := cid.Cast(h.Cid)
		if err != nil {
			return fmt.Errorf("head to announce: %w", err)
		}
		heads = append(heads, c)
	}
	b.queue(heads)
	return nil
}

// queue adds heads to the next announcement.
func (b *broadcaster) queue(heads []cid.Cid) {
	b.mu.Lock()
	for _, c := range heads {
		if _, ok := b.queued[c]; !ok {
			b.queued[c] = struct{}{}
			b.pending = append(b.pending, c)
		}
	}
	b.mu.Unlock()
	signal(b.wake)
}

// welcome announces heads() when peers join the topic, so that a peer
// that joins late or comes back learns the heads at once instead of at the
// next periodic rebroadcast (up to rebroadcast_interval away, a minute by
// default). A joined peer is welcomed once pubsub lists it among the topic
// peers, which it may briefly not be while a duplicate connection closes,
// and at most once a second: joins meanwhile share the next announcement,
// so a flapping peer cannot make every peer announce at its pace. welcome
// must be called once, before close.
func (b *broadcaster) welcome(heads func() []cid.Cid) error {
	events, err := b.topic.EventHandler()
	if err != nil {
		return fmt.Errorf("watch topic %s: %w", b.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	joined := make(chan peer.ID)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		p2p.WatchJoins(ctx, events, func(p peer.ID) {
			select {
			case joined <- p:
			case <-ctx.Done():
			}
		})
	}()
	b.welcomed = make(chan struct{})
	go func() {
		defer close(b.welcomed)
		defer func() {
			cancel()
			<-watched
		}()
		waiting := map[peer.ID]time.Time{} // joined, not welcomed: until when to wait
		var last time.Time
		for {
			var check <-chan time.Time
			if len(waiting) > 0 {
				check = time.After(max(welcomeCheck, welcomeInterval-time.Since(last)))
			}
			select {
			case p := <-joined:
				waiting[p] = time.Now().Add(welcomeWait)
				if time.Since(last) < welcomeInterval {
					continue
				}
			case <-check:
			case <-b.done:
				return
			}
			listed := false
			for _, p := range b.peers() {
				if _, ok := waiting[p]; ok {
					delete(waiting, p)
					listed = true
				}
			}
			for p, until := range waiting {
				if time.Now().After(until) {
					delete(waiting, p)
				}
			}
			if listed {
				b.queue(heads())
				last = time.Now()
			}
		}
	}()
	return nil
}

// announceLoop publishes the queued heads, at most one round of
// announcements per announceInterval.
func (b *broadcaster) announceLoop() {
	defer close(b.stopped)
	var last time.Time
	for {
		select {
		case <-b.wake:
		case <-b.done:
			b.announce()
			return
		}
		if wait := announceInterval - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-b.done:
			}
		}
		last = time.Now()
		b.announce()
	}
}

// announce publishes every queued head, newest first, in as many messages
// as the attached blocks need.
func (b *broadcaster) announce() {
	b.mu.Lock()
	heads := b.pending
	b.pending = nil
	clear(b.queued)
	b.mu.Unlock()
	slices.Reverse(heads)
	ctx := context.Background()
	for len(heads) > 0 {
		var (
			bcast    pb.CRDTBroadcast
			attached []blocks.Block
			budget   = maxAttached
		)
		for len(heads) > 0 {
			blk, err := b.bserv.Blockstore().Get(ctx, heads[0])
			if err == nil && len(blk.RawData()) > budget && len(bcast.Heads) > 0 {
				break // next message
			}
			bcast.Heads = append(bcast.Heads, &pb.Head{Cid: heads[0].Bytes()})
			if err == nil && len(blk.RawData()) <= budget {
				budget -= len(blk.RawData())
				attached = append(attached, blk)
			} // else go-ds-crdt fetches it with bitswap
			heads = heads[1:]
		}
		msg, err := encodeAnnouncement(&bcast, attached)
		if err == nil {
			err = b.topic.Publish(ctx, msg)
		}
		if err != nil {
			b.log.Warn().Err(err).Int("heads", len(bcast.Heads)).Msg("announce heads; the next rebroadcast covers them")
		}
	}
}

func encodeAnnouncement(bcast *pb.CRDTBroadcast, attached []blocks.Block) ([]byte, error) {
	data, err := proto.Marshal(bcast)
	if err != nil {
		return nil, fmt.Errorf("encode announcement: %w", err)
	}
	msg := appendBytes([]byte{envelopeVersion}, data)
	msg = binary.AppendUvarint(msg, uint64(len(attached)))
	for _, blk := range attached {
		msg = appendBytes(msg, blk.Cid().Bytes())
		msg = appendBytes(msg, blk.RawData())
	}
	return msg, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Next returns the next announcement of another peer, once its attached
// blocks are stored. It returns crdt.ErrNoMoreBroadcast once ctx is done or
// the subscription is closed, which stops go-ds-crdt's receiving loop.
func (b *broadcaster) Next(ctx context.Context) ([]byte, error) {
	for {
		msg, err := b.sub.Next(ctx)
		switch {
		case msg == nil && err == nil: // pubsub itself shut down
			return nil, crdt.ErrNoMoreBroadcast
		case err != nil && (ctx.Err() != nil || errors.Is(err, pubsub.ErrSubscriptionCancelled)):
			return nil, crdt.ErrNoMoreBroadcast
		case err != nil:
			return nil, err
		}
		if msg.GetFrom() == b.self {
			continue
		}
		data, blks, err := decodeAnnouncement(msg.GetData())
		if err != nil {
			b.log.Warn().Err(err).Stringer("signer", msg.GetFrom()).Msg("dropped head announcement")
			continue
		}
		if len(blks) > 0 {
			if err := b.bserv.AddBlocks(ctx, blks); err != nil {
				// go-ds-crdt fetches them with bitswap instead.
				b.log.Warn().Err(err).Msg("store announced head blocks")
			}
		}
		return data, nil
	}
}

// decodeAnnouncement returns the go-ds-crdt broadcast and the attached
// blocks, each checked against its CID, which must be one of the announced
// heads.
func decodeAnnouncement(msg []byte) ([]byte, []blocks.Block, error) {
	d := reader{b: msg}
	if d.byte() != envelopeVersion {
		return nil, nil, fmt.Errorf("%w: unknown version", errBadAnnouncement)
	}
	data := d.bytes()
	var heads pb.CRDTBroadcast
	if d.err != nil || proto.Unmarshal(data, &heads) != nil {
		return nil, nil, errBadAnnouncement
	}
	announced := make(map[string]bool, len(heads.Heads))
	for _, h := range heads.Heads {
		announced[string(h.Cid)] = true
	}
	n := d.uvarint()
	if n > uint64(len(heads.Heads)) {
		return nil, nil, fmt.Errorf("%w: more blocks than heads", errBadAnnouncement)
	}
	blks := make([]blocks.Block, 0, n)
	for range n {
		cb, raw := d.bytes(), d.bytes()
		if d.err != nil || !announced[string(cb)] {
			return nil, nil, fmt.Errorf("%w: block of an unannounced head", errBadAnnouncement)
		}
		c, err := cid.Cast(cb)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errBadAnnouncement, err)
		}
		if sum, err := c.Prefix().Sum(raw); err != nil || !sum.Equals(c) {
			return nil, nil, fmt.Errorf("%w: block does not match %s", errBadAnnouncement, c)
		}
		blk, err := blocks.NewBlockWithCid(raw, c)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errBadAnnouncement, err)
		}
		blks = append(blks, blk)
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, nil, fmt.Errorf("%w: trailing bytes", errBadAnnouncement)
	}
	return data, blks, nil
}

// reader decodes the announcement, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = errBadAnnouncement
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadAnnouncement
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errBadAnnouncement
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// peers lists the peers subscribed to the topic.
func (b *broadcaster) peers() []peer.ID { return b.ps.ListPeers(b.name) }

// close announces what is queued and leaves the topic. The subscription
// must be drained before the topic can be closed.
func (b *broadcaster) close() error {
	close(b.done)
	<-b.stopped
	if b.welcomed != nil {
		<-b.welcomed
	}
	b.sub.Cancel()
	for {
		if msg, err := b.sub.Next(context.Background()); msg == nil || err != nil {
			break
		}
	}
	return errors.Join(b.topic.Close(), b.ps.UnregisterTopicValidator(b.name))
}
