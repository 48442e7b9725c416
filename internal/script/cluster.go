package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	lua "github.com/yuin/gopher-lua"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/policy"
)

// runner is one run of a script: the cluster module's functions, the
// resources they opened and the progress counters.
type runner struct {
	ctx    context.Context
	exit   context.CancelCauseFunc
	cl     *client.Client
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	prog   *progress
	s      *policy.Script

	mu      sync.Mutex
	streams map[*pinStream]struct{}
	readers map[*lineReader]struct{}
	wg      sync.WaitGroup // stream goroutines
}

func newRunner(ctx context.Context, exit context.CancelCauseFunc, path string, opts Options) *runner {
	name := filepath.Base(path)
	if opts.Source != nil && !strings.HasSuffix(name, ".lua") {
		name += ".lua"
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	prog := newProgress(stderr, name, opts)
	stdin := opts.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return &runner{
		ctx: ctx, exit: exit, cl: opts.Client, stdin: stdin, prog: prog,
		stdout: prog.writer(opts.Stdout), stderr: prog.writer(stderr),
		streams: map[*pinStream]struct{}{}, readers: map[*lineReader]struct{}{},
	}
}

// module builds the cluster table that require("cluster") returns.
func (r *runner) module(s *policy.Script) lua.LValue {
	r.s = s
	L := s.L
	t := L.CreateTable(0, 16)
	L.SetFuncs(t, map[string]lua.LGFunction{
		"pin":        r.pin,
		"unpin":      r.unpin,
		"allocation": r.allocation,
		"status":     r.status,
		"pins":       r.pins,
		"peers":      r.peers,
		"id":         r.id,
		"lines":      r.lines,
		"sleep":      r.sleep,
		"progress":   r.progress,
		"warn":       r.warn,
		"exit":       r.exitFn,
	})
	return t
}

// closeAll cancels the streams and closes the files the script left open
// (loops it broke out of), and waits for the stream goroutines.
func (r *runner) closeAll() {
	r.mu.Lock()
	for ps := range r.streams {
		ps.cancel()
	}
	for lr := range r.readers {
		lr.close()
	}
	clear(r.streams)
	clear(r.readers)
	r.mu.Unlock()
	r.wg.Wait()
}

// call performs one API operation for the script: op and subject name it
// in the error message, which becomes a Lua error at the script's line.
func (r *runner) call(L *lua.LState, op, subject string, fn func(ctx context.Context) error) {
	r.s.Step()
	if err := fn(r.ctx); err != nil {
		r.prog.errs.Add(1)
		L.RaiseError("%s", r.describe(op, subject, err))
	}
	r.prog.calls.Add(1)
}

// describe renders an operation's error: "pin bafy...: 403 refused by the
// admission policy: ...". The API's message often repeats the operation
// and the CID; that prefix is not repeated.
func (r *runner) describe(op, subject string, err error) string {
	head := op
	if subject != "" {
		head += " " + subject
	}
	if r.ctx.Err() != nil {
		return head + ": interrupted"
	}
	var ae api.Error
	if errors.As(err, &ae) {
		msg := strings.TrimPrefix(ae.Message, head+": ")
		if subject != "" {
			msg = strings.TrimPrefix(msg, subject+": ")
		}
		return fmt.Sprintf("%s: %d %s", head, ae.Code, msg)
	}
	return fmt.Sprintf("%s: %v", head, err)
}

// target parses the cid argument of pin and unpin: a CID, or a path
// (/ipfs/..., /ipns/..., cid/sub/path).
func target(L *lua.LState, op string) (api.Cid, string) {
	s := strings.TrimSpace(L.CheckString(1))
	if strings.Contains(s, "/") {
		return api.CidUndef, s
	}
	c, err := api.DecodeCid(s)
	if err != nil {
		L.RaiseError("%s %q: invalid CID: %v", op, s, err)
	}
	return c, ""
}

func (r *runner) pin(L *lua.LState) int {
	c, path := target(L, "pin")
	opts := pinOptions(L, L.OptTable(2, nil))
	var pin api.Pin
	subject := path
	if path == "" {
		subject = c.String()
	}
	r.call(L, "pin", subject, func(ctx context.Context) (err error) {
		if path != "" {
			pin, err = r.cl.PinPath(ctx, path, opts)
			return err
		}
		pin, err = r.cl.Pin(ctx, c, opts)
		return err
	})
	L.Push(pinTable(L, &pin))
	return 1
}

func (r *runner) unpin(L *lua.LState) int {
	c, path := target(L, "unpin")
	var pin api.Pin
	subject := path
	if path == "" {
		subject = c.String()
	}
	r.call(L, "unpin", subject, func(ctx context.Context) (err error) {
		if path != "" {
			pin, err = r.cl.UnpinPath(ctx, path)
			return err
		}
		pin, err = r.cl.Unpin(ctx, c)
		return err
	})
	L.Push(pinTable(L, &pin))
	return 1
}

// allocation returns the pin of a CID as the pinset holds it, or nil when
// the CID is not in the pinset.
func (r *runner) allocation(L *lua.LState) int {
	c := cidArg(L, "allocation")
	var pin api.Pin
	found := true
	r.call(L, "allocation", c.String(), func(ctx context.Context) (err error) {
		pin, err = r.cl.Allocation(ctx, c)
		var ae api.Error
		if errors.As(err, &ae) && ae.Code == 404 {
			found = false
			return nil
		}
		return err
	})
	if !found {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(pinTable(L, &pin))
	return 1
}

func cidArg(L *lua.LState, op string) api.Cid {
	s := strings.TrimSpace(L.CheckString(1))
	c, err := api.DecodeCid(s)
	if err != nil {
		L.RaiseError("%s %q: invalid CID: %v", op, s, err)
	}
	return c
}

func (r *runner) status(L *lua.LState) int {
	c := cidArg(L, "status")
	local := false
	if t := L.OptTable(2, nil); t != nil {
		t.ForEach(func(k, v lua.LValue) {
			if k != lua.LString("local_only") {
				L.RaiseError("status: unknown option %s (options: local_only)", describeKey(k))
			}
			b, ok := v.(lua.LBool)
			if !ok {
				L.RaiseError("status: option local_only: want a boolean, got %s", v.Type())
			}
			local = bool(b)
		})
	}
	var gpi api.GlobalPinInfo
	r.call(L, "status", c.String(), func(ctx context.Context) (err error) {
		gpi, err = r.cl.Status(ctx, c, local)
		return err
	})
	L.Push(statusTable(L, &gpi))
	return 1
}

func (r *runner) peers(L *lua.LState) int {
	arr := L.CreateTable(4, 0)
	r.call(L, "peers", "", func(ctx context.Context) error {
		return r.cl.Peers(ctx, func(id api.ID) error {
			arr.Append(peerTable(L, &id))
			return nil
		})
	})
	L.Push(arr)
	return 1
}

func (r *runner) id(L *lua.LState) int {
	var id api.ID
	r.call(L, "id", "", func(ctx context.Context) (err error) {
		id, err = r.cl.ID(ctx)
		return err
	})
	L.Push(peerTable(L, &id))
	return 1
}

func (r *runner) sleep(L *lua.LState) int {
	secs := float64(L.CheckNumber(1))
	if math.IsNaN(secs) || secs < 0 {
		L.RaiseError("sleep: want a number of seconds >= 0, got %v", secs)
	}
	r.s.Step()
	d := time.Duration(min(secs, float64(math.MaxInt64/2)/1e9) * float64(time.Second))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
		L.RaiseError("sleep: interrupted")
	}
	return 0
}

// progress sets the position shown by the progress line: done, and the
// total when known.
func (r *runner) progress(L *lua.LState) int {
	done, ok := wholeNumber(L.CheckNumber(1))
	if !ok || done < 0 {
		L.RaiseError("progress: done must be a whole number >= 0, got %v", L.Get(1))
	}
	total := int64(-1)
	if v := L.Get(2); v != lua.LNil {
		n, ok := wholeNumber(L.CheckNumber(2))
		if !ok || n < 0 {
			L.RaiseError("progress: total must be a whole number >= 0, got %v", v)
		}
		total = n
	}
	r.prog.done.Store(done)
	r.prog.total.Store(total)
	r.prog.explicit.Store(true)
	return 0
}

// warn writes its arguments, tab-separated, as one line on stderr.
func (r *runner) warn(L *lua.LState) int {
	var b strings.Builder
	for i := 1; i <= L.GetTop(); i++ {
		if i > 1 {
			b.WriteByte('\t')
		}
		b.WriteString(L.ToStringMeta(L.Get(i)).String())
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(r.stderr, b.String()); err != nil {
		L.RaiseError("warn: %v", err)
	}
	return 0
}

// exitFn ends the script with an exit code. The run's context is canceled
// with the code as its cause, so that pcall cannot keep the script alive:
// the VM stops at the next instruction.
func (r *runner) exitFn(L *lua.LState) int {
	code := 0
	if v := L.Get(1); v != lua.LNil {
		n, ok := wholeNumber(L.CheckNumber(1))
		if !ok || n < 0 || n > 255 {
			L.RaiseError("exit: want a code from 0 to 255, got %v", v)
		}
		code = int(n)
	}
	r.exit(&exitCause{code: code})
	L.RaiseError("exit %d", code)
	return 0
}

func wholeNumber(n lua.LNumber) (int64, bool) {
	f := float64(n)
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// pinOptionNames are the keys of cluster.pin's options table.
var pinOptionNames = []string{"name", "mode", "replication", "replication_min", "replication_max",
	"metadata", "user_allocations", "expire_in", "expire_at", "origins"}

// pinOptions converts cluster.pin's options table. Unknown keys and values
// of the wrong type are errors, so that a misspelt option is not silently
// ignored.
func pinOptions(L *lua.LState, t *lua.LTable) api.PinOptions {
	var po api.PinOptions
	if t == nil {
		return po
	}
	known := make(map[string]bool, len(pinOptionNames))
	for _, n := range pinOptionNames {
		known[n] = true
	}
	bad := func(key, format string, args ...any) {
		L.RaiseError("pin: option %s: %s", key, fmt.Sprintf(format, args...))
	}
	str := func(key string, v lua.LValue) string {
		switch v := v.(type) {
		case lua.LString:
			return string(v)
		case lua.LNumber:
			return v.String()
		}
		bad(key, "want a string, got %s", v.Type())
		return ""
	}
	integer := func(key string, v lua.LValue) int {
		n, ok := v.(lua.LNumber)
		if !ok {
			bad(key, "want an integer, got %s", v.Type())
		}
		i, whole := wholeNumber(n)
		if !whole || i < math.MinInt32 || i > math.MaxInt32 {
			bad(key, "want an integer, got %v", n)
		}
		return int(i)
	}
	strList := func(key string, v lua.LValue) []string {
		arr, ok := v.(*lua.LTable)
		if !ok {
			bad(key, "want an array of strings, got %s", v.Type())
		}
		var out []string
		for i := 1; i <= arr.Len(); i++ {
			out = append(out, str(fmt.Sprintf("%s[%d]", key, i), arr.RawGetInt(i)))
		}
		return out
	}
	var rmin, rmax, both lua.LValue = lua.LNil, lua.LNil, lua.LNil
	var expireIn, expireAt lua.LValue = lua.LNil, lua.LNil
	t.ForEach(func(k, v lua.LValue) {
		ks, ok := k.(lua.LString)
		if !ok || !known[string(ks)] {
			L.RaiseError("pin: unknown option %s (options: %s)", describeKey(k), joinNames(pinOptionNames))
		}
		key := string(ks)
		switch key {
		case "name":
			po.Name = str(key, v)
		case "mode":
			m, err := api.PinModeFromString(str(key, v))
			if err != nil {
				bad(key, "%v", err)
			}
			po.Mode = m
		case "replication":
			both = v
		case "replication_min":
			rmin = v
		case "replication_max":
			rmax = v
		case "metadata":
			md, ok := v.(*lua.LTable)
			if !ok {
				bad(key, "want a table of strings, got %s", v.Type())
			}
			po.Metadata = map[string]string{}
			md.ForEach(func(mk, mv lua.LValue) {
				name, ok := mk.(lua.LString)
				if !ok || name == "" {
					bad(key, "keys must be non-empty strings, got %s", describeKey(mk))
				}
				switch mv := mv.(type) {
				case lua.LString, lua.LNumber, lua.LBool:
					po.Metadata[string(name)] = mv.String()
				default:
					bad(key, "value of %q: want a string, got %s", string(name), mv.Type())
				}
			})
		case "user_allocations":
			for _, s := range strList(key, v) {
				id, err := peer.Decode(s)
				if err != nil {
					bad(key, "%q is not a peer id: %v", s, err)
				}
				po.UserAllocations = append(po.UserAllocations, id)
			}
		case "origins":
			for _, s := range strList(key, v) {
				m, err := api.NewMultiaddr(s)
				if err != nil {
					bad(key, "%q: %v", s, err)
				}
				po.Origins = append(po.Origins, m)
			}
		case "expire_in":
			expireIn = v
		case "expire_at":
			expireAt = v
		}
	})
	switch {
	case both != lua.LNil && (rmin != lua.LNil || rmax != lua.LNil):
		L.RaiseError("pin: give replication, or replication_min and replication_max, not both")
	case both != lua.LNil:
		po.ReplicationFactorMin = integer("replication", both)
		po.ReplicationFactorMax = po.ReplicationFactorMin
	default:
		if rmin != lua.LNil {
			po.ReplicationFactorMin = integer("replication_min", rmin)
		}
		if rmax != lua.LNil {
			po.ReplicationFactorMax = integer("replication_max", rmax)
		}
	}
	switch {
	case expireIn != lua.LNil && expireAt != lua.LNil:
		L.RaiseError("pin: give expire_in or expire_at, not both")
	case expireIn != lua.LNil:
		var d time.Duration
		switch v := expireIn.(type) {
		case lua.LNumber:
			d = time.Duration(float64(v) * float64(time.Second))
		case lua.LString:
			var err error
			if d, err = parseDuration(string(v)); err != nil {
				bad("expire_in", "%v", err)
			}
		default:
			bad("expire_in", "want a duration (\"1h30m\", \"7d\") or seconds, got %s", expireIn.Type())
		}
		if d < time.Second {
			bad("expire_in", "want at least 1s, got %v", d)
		}
		po.ExpireAt = time.Now().Add(d).UTC()
	case expireAt != lua.LNil:
		n, ok := expireAt.(lua.LNumber)
		if !ok {
			bad("expire_at", "want Unix seconds, got %s", expireAt.Type())
		}
		sec, frac := math.Modf(float64(n))
		po.ExpireAt = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	return po
}

// parseDuration reads durations like the embedded duration module does:
// a sequence of numbers with units ms, s, m, h, d and w ("1h30m", "7d",
// "1.5h"); a bare number is seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute,
		"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
			j++
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		unit, ok := units[rest[i:j]]
		if i == 0 || err != nil || !ok {
			return 0, fmt.Errorf("invalid duration %q: want numbers with units ms, s, m, h, d, w (\"1h30m\", \"7d\")", s)
		}
		total += time.Duration(n * float64(unit))
		rest = rest[j:]
	}
	if s == "" {
		return 0, errors.New("empty duration")
	}
	return total, nil
}

func describeKey(k lua.LValue) string {
	if s, ok := k.(lua.LString); ok {
		return strconv.Quote(string(s))
	}
	return k.Type().String() + " key " + k.String()
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

// pinTable is the pin as policies see it (policy.PinTable) plus what the
// pinset adds: allocations, type and timestamp.
func pinTable(L *lua.LState, pin *api.Pin) *lua.LTable {
	t := policy.PinTable(L, pin)
	t.RawSetString("allocations", idArray(L, pin.Allocations))
	t.RawSetString("type", lua.LString(pin.Type.String()))
	if !pin.Timestamp.IsZero() {
		t.RawSetString("timestamp", lua.LNumber(pin.Timestamp.Unix()))
	}
	return t
}

func idArray(L *lua.LState, ids []peer.ID) *lua.LTable {
	arr := L.CreateTable(len(ids), 0)
	for _, id := range ids {
		arr.Append(lua.LString(id.String()))
	}
	return arr
}

func addrArray(L *lua.LState, addrs []api.Multiaddr) *lua.LTable {
	arr := L.CreateTable(len(addrs), 0)
	for _, a := range addrs {
		if a.Multiaddr != nil {
			arr.Append(lua.LString(a.String()))
		}
	}
	return arr
}

func stringMap(L *lua.LState, m map[string]string) *lua.LTable {
	t := L.CreateTable(0, len(m))
	for k, v := range m {
		t.RawSetString(k, lua.LString(v))
	}
	return t
}

// statusTable is a pin's status on every peer, with counts per status
// for the common questions (how many peers have it pinned?).
func statusTable(L *lua.LState, gpi *api.GlobalPinInfo) *lua.LTable {
	t := L.CreateTable(0, 9)
	c := ""
	if gpi.Cid.Defined() {
		c = gpi.Cid.String()
	}
	t.RawSetString("cid", lua.LString(c))
	t.RawSetString("name", lua.LString(gpi.Name))
	t.RawSetString("allocations", idArray(L, gpi.Allocations))
	t.RawSetString("origins", addrArray(L, gpi.Origins))
	t.RawSetString("metadata", stringMap(L, gpi.Metadata))
	if !gpi.Created.IsZero() {
		t.RawSetString("created", lua.LNumber(gpi.Created.Unix()))
	}
	pm := L.CreateTable(0, len(gpi.PeerMap))
	counts := L.CreateTable(0, 4)
	pinned := 0
	ids := make([]string, 0, len(gpi.PeerMap))
	for id := range gpi.PeerMap {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		pi := gpi.PeerMap[id]
		e := L.CreateTable(0, 7)
		status := pi.Status.String()
		e.RawSetString("peername", lua.LString(pi.PeerName))
		e.RawSetString("status", lua.LString(status))
		if pi.Error != "" {
			e.RawSetString("error", lua.LString(pi.Error))
		}
		e.RawSetString("attempt_count", lua.LNumber(pi.AttemptCount))
		e.RawSetString("priority_pin", lua.LBool(pi.PriorityPin))
		if !pi.TS.IsZero() {
			e.RawSetString("timestamp", lua.LNumber(pi.TS.Unix()))
		}
		if pi.IPFS != "" {
			e.RawSetString("ipfs_peer_id", lua.LString(pi.IPFS.String()))
		}
		pm.RawSetString(id, e)
		n, _ := counts.RawGetString(status).(lua.LNumber)
		counts.RawSetString(status, n+1)
		if pi.Status == api.TrackerStatusPinned {
			pinned++
		}
	}
	t.RawSetString("peer_map", pm)
	t.RawSetString("counts", counts)
	t.RawSetString("pinned", lua.LNumber(pinned))
	return t
}

// peerTable is a cluster peer as /peers and /id describe it.
func peerTable(L *lua.LState, id *api.ID) *lua.LTable {
	t := L.CreateTable(0, 9)
	t.RawSetString("id", lua.LString(id.ID.String()))
	t.RawSetString("peername", lua.LString(id.Peername))
	t.RawSetString("addresses", addrArray(L, id.Addresses))
	t.RawSetString("cluster_peers", idArray(L, id.ClusterPeers))
	t.RawSetString("version", lua.LString(id.Version))
	t.RawSetString("policy_sha256", lua.LString(id.PolicySHA256))
	if id.Error != "" {
		t.RawSetString("error", lua.LString(id.Error))
	}
	if id.IPFS.ID != "" || id.IPFS.Error != "" {
		ipfs := L.CreateTable(0, 3)
		ipfs.RawSetString("id", lua.LString(id.IPFS.ID.String()))
		ipfs.RawSetString("addresses", addrArray(L, id.IPFS.Addresses))
		if id.IPFS.Error != "" {
			ipfs.RawSetString("error", lua.LString(id.IPFS.Error))
		}
		t.RawSetString("ipfs", ipfs)
	}
	return t
}
