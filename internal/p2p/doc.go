// Package p2p is the peer-to-peer layer of a cluster peer: the libp2p host
// on a private network (NewHost), the peerstore file (PeerFile) and the
// peer RPC (RPC) that peers use to call each other.
//
// # Host
//
// The host speaks TCP only, secured by TLS or noise, inside the private
// network of cluster.secret. TLS comes first: its AES-GCM runs on the
// CPU's AES instructions, about three times cheaper than noise's
// ChaCha20-Poly1305, which matters for the blocks of an add; a peer that
// prefers noise is still understood. Unlike the reference, nothing reaches beyond
// the configured peers unless switched on: no NAT port mapping, AutoNAT,
// relay, hole punching, mDNS, DHT, public bootstrap peers or DNS lookups.
//
// # RPC
//
// Services register methods by name ("Cluster.ID", "PinTracker.StatusAll")
// with Handle (one result) or HandleStream (any number of results), each
// with a Level: Open (any peer on the private network), Trusted (peers
// Config.IsTrusted accepts) or Closed (this process only). Callers use
// RPC.Call, RPC.Stream, and CallAll or Fanout to ask many peers at once. A
// call addressed to this peer runs the registered handler in the calling
// goroutine, without encoding.
//
// # Wire format
//
// Each call is one libp2p stream of protocol /ipfscluster/1.0/rpc made of
// frames:
//
//	frame   = kind:byte length:uvarint body:[length]byte   (length <= 16 MiB)
//
//	'R' unary request     body = name-length:uvarint name:bytes value
//	'S' stream request    body = same as 'R'
//	'V' value             body = value
//	'Z' end of stream     body = empty
//	'E' error             body = code:byte message:utf-8
//
//	value   = codec:byte data
//	          'b': binary encoding (encoding.BinaryAppender), e.g. api.Pin
//	          'j': JSON, for every other type
//	code    = 'H' handler error, 'A' not allowed (unknown method, closed, or
//	          untrusted caller), 'B' bad request, 'U' busy (too many calls)
//
// The caller writes one request frame and keeps its side of the stream
// open. The callee answers a unary request with one 'V' or one 'E' frame,
// and a stream request with any number of 'V' frames followed by 'Z' or
// 'E'; then it closes the stream. The caller sends nothing after its
// request: closing or resetting its side cancels the call, and the callee
// stops the handler through its context. Frame bodies are read as their
// bytes arrive, so an announced length allocates nothing until sent.
//
// Limits on the callee: the request must arrive within Config.ReadTimeout,
// every reply frame must be written within Config.WriteTimeout, a peer may
// have at most Config.MaxStreamsPerPeer calls in flight, and a malformed
// or oversized frame is answered with a 'B' error, never served.
package p2p
