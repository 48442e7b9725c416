package ipfsconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"ipfs-cluster/internal/api"
)

// PinLs type filters. A filter may also list several types separated by
// commas; each is listed in turn.
const (
	PinTypeRecursive = "recursive"
	PinTypeDirect    = "direct"
	// PinTypeIndirect and PinTypeAll make kubo walk every recursive pin's
	// DAG: slow on large pinsets.
	PinTypeIndirect = "indirect"
	PinTypeAll      = "all"
	// PinTypePinned lists every CID pinned in its own right, recursive and
	// direct, without walking any DAG.
	PinTypePinned = PinTypeRecursive + "," + PinTypeDirect
)

const (
	// maxOrigins bounds the origins a pin connects kubo to.
	maxOrigins = 10
	// swarmConnectTimeout bounds each swarm/connect request.
	swarmConnectTimeout = 30 * time.Second
)

// kuboMode is the kubo pin type a cluster pin asks for.
func kuboMode(pin api.Pin) api.IPFSPinStatus {
	if pin.IsDirect() {
		return api.IPFSPinStatusDirect
	}
	return api.IPFSPinStatusRecursive
}

// Pin makes kubo pin pin.Cid, recursively or directly as the pin's mode
// says, and returns once kubo holds the pin. A pin kubo already holds in that
// mode returns at once, and so does a direct pin of a CID kubo pins
// recursively: kubo refuses to weaken a pin, and its recursive pin holds
// the block the direct pin asks for. When the pin has origins, kubo is connected to up to
// ten of them while it pins, best effort. When the pin replaces
// pin.PinUpdate and kubo holds that recursively, pin/update fetches only the
// difference (bounded by pin_timeout; on failure Pin falls back to pin/add).
//
// Pin has no overall timeout beyond ctx, but gives up with an error wrapping
// ErrPinStalled when kubo fetches no new block for pin_timeout. progress, if
// not nil, is called with the number of blocks fetched so far each time it
// grows.
func (c *Connector) Pin(ctx context.Context, pin api.Pin, progress func(blocks uint64)) error {
	c.metrics.pinAdd.Inc()
	err := c.pin(ctx, pin, progress)
	if err != nil {
		c.metrics.pinAddErrors.Inc()
	}
	return err
}

// pin is Pin without the counting.
func (c *Connector) pin(ctx context.Context, pin api.Pin, progress func(blocks uint64)) error {
	mode := kuboMode(pin)
	have, err := c.holds(ctx, pin.Cid, mode)
	if err != nil {
		return fmt.Errorf("pin %s: %w", pin.Cid, err)
	}
	if have.IsPinned() {
		return nil
	}
	if len(pin.Origins) > 0 {
		octx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.connectOrigins(octx, pin.Origins)
		}()
		// Connections still being dialled are of no use once the pin is
		// done.
		defer func() {
			cancel()
			<-done
		}()
	}
	if mode == api.IPFSPinStatusRecursive && pin.PinUpdate.Defined() && !pin.PinUpdate.Equals(pin.Cid.Cid) {
		updated, err := c.pinUpdate(ctx, pin)
		if updated || err != nil {
			return err
		}
	}
	return c.pinAdd(ctx, []api.Pin{pin}, mode, progress)
}

// pinManyFanout bounds the pin/ls checks PinMany runs at once.
const pinManyFanout = 8

// PinMany does what Pin does for every pin of pins, in fewer requests: the
// pins kubo does not hold yet go to kubo in one pin/add per mode, which
// costs kubo about half the CPU of a request each. kubo pins the CIDs of a
// request one after the other and stops at the first failure, so when a
// request fails its pins are pinned again one by one, which reports each
// failure against its own CID. A pin with origins, a pin update or a depth
// limit goes through Pin on its own.
//
// done is called once for every pin, with its index in pins, as soon as
// its outcome is known: a pin kubo holds already, or one pinned again on
// its own, does not wait for a CID of the same request that kubo cannot
// find. done may be called from several goroutines at once; PinMany
// returns once every call returned.
//
// unheld, when not nil, marks the pins the caller knows kubo does not hold
// (unheld[i] for pins[i]): they skip the pin/ls check, a request that costs
// kubo about as much CPU as pinning a small DAG. A pin marked by mistake is
// still pinned right; kubo only walks its DAG again. Direct pins are
// checked whatever unheld says.
func (c *Connector) PinMany(ctx context.Context, pins []api.Pin, unheld []bool, done func(i int, err error)) {
	c.metrics.pinAdd.Add(float64(len(pins)))
	report := func(i int, err error) {
		if err != nil {
			c.metrics.pinAddErrors.Inc()
		}
		done(i, err)
	}
	var alone, together, check []int
	for i, p := range pins {
		switch {
		case len(p.Origins) > 0 || p.PinUpdate.Defined() || p.MaxDepth > 0:
			alone = append(alone, i)
			continue
		case unheld == nil || !unheld[i] || p.IsDirect():
			// A direct pin is checked even so: kubo refuses one for a
			// CID it pins recursively, which holds it already.
			check = append(check, i)
		}
		together = append(together, i)
	}
	have := make([]api.IPFSPinStatus, len(pins))
	failed := make([]bool, len(pins))
	fanOut(check, pinManyFanout, func(i int) {
		st, err := c.holds(ctx, pins[i].Cid, kuboMode(pins[i]))
		if err != nil {
			failed[i] = true
			report(i, fmt.Errorf("pin %s: %w", pins[i].Cid, err))
		}
		have[i] = st
	})
	for _, mode := range []api.IPFSPinStatus{api.IPFSPinStatusRecursive, api.IPFSPinStatusDirect} {
		var group []api.Pin
		var idx []int
		for _, i := range together {
			switch {
			case failed[i] || kuboMode(pins[i]) != mode:
			case have[i].IsPinned():
				report(i, nil)
			default:
				group = append(group, pins[i])
				idx = append(idx, i)
			}
		}
		if len(group) == 0 {
			continue
		}
		err := c.pinAdd(ctx, group, mode, nil)
		switch {
		case err == nil || ctx.Err() != nil || len(group) == 1:
			for _, i := range idx {
				report(i, err)
			}
		default:
			c.log.Debug().Err(err).Int("pins", len(group)).Msg("pin/add of several CIDs failed; pinning them one by one")
			alone = append(alone, idx...)
		}
	}
	fanOut(alone, pinManyFanout, func(i int) { report(i, c.pin(ctx, pins[i], nil)) })
}

// fanOut calls fn for every index, from up to limit goroutines.
func fanOut(indexes []int, limit int, fn func(i int)) {
	switch len(indexes) {
	case 0:
		return
	case 1:
		fn(indexes[0])
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(limit, len(indexes)) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for _, i := range indexes {
		next <- i
	}
	close(next)
	wg.Wait()
}

// connectOrigins connects kubo to up to maxOrigins origins in parallel and
// logs the failures: the origins only help kubo find the content sooner.
func (c *Connector) connectOrigins(ctx context.Context, origins []api.Multiaddr) {
	if len(origins) > maxOrigins {
		origins = origins[:maxOrigins]
	}
	if err := c.swarmConnect(ctx, c.long, origins); err != nil && ctx.Err() == nil {
		c.log.Debug().Err(err).Msg("connecting to pin origins")
	}
}

// pinUpdate moves kubo's recursive pin of pin.PinUpdate to pin.Cid. It
// reports false with no error when pin/add should be used instead: kubo does
// not hold the old pin, or the update failed for a reason other than ctx.
func (c *Connector) pinUpdate(ctx context.Context, pin api.Pin) (bool, error) {
	from := pin.PinUpdate
	have, err := c.pinLsCid(ctx, from, api.IPFSPinStatusRecursive)
	if err != nil {
		return false, fmt.Errorf("pin %s: %w", pin.Cid, err)
	}
	if have != api.IPFSPinStatusRecursive {
		return false, nil
	}
	// pin/update reports no progress, so pin_timeout bounds it as a whole.
	uctx, cancel := c.withTimeout(ctx, c.cfg.PinTimeout, "pin_timeout")
	defer cancel()
	q := url.Values{"arg": {from.String(), pin.Cid.String()}, "unpin": {"false"}}
	s, err := c.post(uctx, c.long, "pin/update", q, nil, "")
	if err == nil {
		err = s.finish()
	}
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("pin %s: %w", pin.Cid, err)
	default:
		c.log.Warn().Err(err).Stringer("from", from).Stringer("cid", pin.Cid).Msg("pin/update failed, falling back to pin/add")
		return false, nil
	}
}

// pinAdd runs one pin/add of pins, all in mode, with progress reports
// (the blocks fetched for all of them) and abandons it when the reported
// progress stops growing for pin_timeout.
func (c *Connector) pinAdd(ctx context.Context, pins []api.Pin, mode api.IPFSPinStatus, progress func(uint64)) error {
	q := url.Values{
		"recursive": {strconv.FormatBool(mode == api.IPFSPinStatusRecursive)},
		"progress":  {"true"},
	}
	for _, p := range pins {
		q.Add("arg", p.Cid.String())
	}
	if len(pins) == 1 && pins[0].MaxDepth > 0 {
		// kubo 0.38 ignores it and pins the whole DAG.
		q.Set("max-depth", strconv.Itoa(int(pins[0].MaxDepth)))
	}
	what := pins[0].Cid.String()
	if len(pins) > 1 {
		what = fmt.Sprintf("%s and %d more", what, len(pins)-1)
	}
	stalled := fmt.Errorf("pin %s: %w for %s: kubo fetched no new block, pin/add cancelled", what, ErrPinStalled, c.cfg.PinTimeout)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(c.cfg.PinTimeout, func() { cancel(stalled) })
	defer watchdog.Stop()

	fail := func(err error) error {
		if context.Cause(ctx) == stalled {
			return stalled
		}
		return fmt.Errorf("pin %s: %w", what, err)
	}
	s, err := c.post(ctx, c.long, "pin/add", q, nil, "")
	if err != nil {
		return fail(err)
	}
	defer s.close()
	// kubo sends {"Progress":N} every 500ms ({} while N is 0), then
	// {"Pins":[...]} once pinned.
	var fetched uint64
	for {
		var out struct{ Progress uint64 }
		err := s.next(&out)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fail(err)
		}
		if out.Progress > fetched {
			fetched = out.Progress
			watchdog.Reset(c.cfg.PinTimeout)
			if progress != nil {
				progress(fetched)
			}
		}
	}
}

// Unpin removes kubo's pin of c, recursive or direct, bounded by
// unpin_timeout. A CID kubo does not pin is not an error.
func (c *Connector) Unpin(ctx context.Context, cid api.Cid) error {
	if c.cfg.UnpinDisable {
		return fmt.Errorf("unpin %s: unpinning is disabled (unpin_disable)", cid)
	}
	ctx, cancel := c.withTimeout(ctx, c.cfg.UnpinTimeout, "unpin_timeout")
	defer cancel()
	s, err := c.post(ctx, c.long, "pin/rm", url.Values{"arg": {cid.String()}}, nil, "")
	if err == nil {
		err = s.finish()
	}
	if err != nil && !isNotPinned(err) {
		return fmt.Errorf("unpin %s: %w", cid, err)
	}
	return nil
}

// isNotPinned reports whether kubo answered that the CID is not pinned
// (pin/ls: "path '<cid>' is not pinned"; pin/rm: "not pinned or pinned
// indirectly").
func isNotPinned(err error) bool {
	var rerr *RPCError
	return errors.As(err, &rerr) && strings.Contains(rerr.Message, "not pinned")
}

// PinLs calls fn for every pin of the given type: "recursive", "direct",
// "indirect", "all", or several of them separated by commas (PinTypePinned),
// each listed to its end in turn, each bounded by ipfs_request_timeout. Pins
// are decoded one at a time as kubo streams them, so memory use does not
// depend on the number of pins. An error from fn stops the listing and is
// returned.
func (c *Connector) PinLs(ctx context.Context, typeFilter string, fn func(api.IPFSPinInfo) error) error {
	types := strings.Split(typeFilter, ",")
	for _, t := range types {
		switch t {
		case PinTypeRecursive, PinTypeDirect, PinTypeIndirect, PinTypeAll:
		default:
			return fmt.Errorf("pin ls: invalid type %q: want recursive, direct, indirect or all", t)
		}
	}
	for _, t := range types {
		if err := c.pinLs(ctx, t, fn); err != nil {
			return err
		}
	}
	return nil
}

func (c *Connector) pinLs(ctx context.Context, typ string, fn func(api.IPFSPinInfo) error) error {
	ctx, cancel := c.withTimeout(ctx, c.cfg.IPFSRequestTimeout, "ipfs_request_timeout")
	defer cancel()
	q := url.Values{"stream": {"true"}, "type": {typ}, "names": {"false"}}
	s, err := c.post(ctx, c.short, "pin/ls", q, nil, "")
	if err != nil {
		return fmt.Errorf("pin ls %s: %w", typ, err)
	}
	defer s.close()
	var line pinLsLine
	for {
		line = pinLsLine{}
		err := s.next(&line)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pin ls %s: %w", typ, err)
		}
		info, err := line.info()
		if err != nil {
			return fmt.Errorf("pin ls %s: %w", typ, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
}

// pinLsLine is one line of a streamed pin/ls: {"Cid":"...","Type":"..."}.
type pinLsLine struct {
	Cid  string
	Type string
}

func (l pinLsLine) info() (api.IPFSPinInfo, error) {
	c, err := api.DecodeCid(l.Cid)
	if err != nil {
		return api.IPFSPinInfo{}, err
	}
	return api.IPFSPinInfo{Cid: c, Type: pinStatus(l.Type)}, nil
}

// pinStatus maps kubo's pin type, including "indirect through <cid>" as
// pin/ls reports indirect pins of a given CID, to an IPFSPinStatus.
func pinStatus(t string) api.IPFSPinStatus {
	if strings.HasPrefix(t, "indirect") {
		return api.IPFSPinStatusIndirect
	}
	return api.IPFSPinStatus(t)
}

// PinLsCid reports how kubo holds pin.Cid for the pin's mode: recursive
// for a recursive pin; direct or recursive for a direct one. Indirect pins
// are not checked: that would make kubo walk every recursive DAG. A CID
// kubo does not hold so is IPFSPinStatusUnpinned, without error.
func (c *Connector) PinLsCid(ctx context.Context, pin api.Pin) (api.IPFSPinStatus, error) {
	st, err := c.holds(ctx, pin.Cid, kuboMode(pin))
	if err != nil {
		return api.IPFSPinStatusUnpinned, fmt.Errorf("pin ls %s: %w", pin.Cid, err)
	}
	return st, nil
}

// holds is pinLsCid in mode, then, for a direct mode kubo does not hold,
// recursive: a recursive pin holds the block as well.
func (c *Connector) holds(ctx context.Context, cid api.Cid, mode api.IPFSPinStatus) (api.IPFSPinStatus, error) {
	st, err := c.pinLsCid(ctx, cid, mode)
	if err != nil || st.IsPinned() || mode != api.IPFSPinStatusDirect {
		return st, err
	}
	return c.pinLsCid(ctx, cid, api.IPFSPinStatusRecursive)
}

func (c *Connector) pinLsCid(ctx context.Context, cid api.Cid, mode api.IPFSPinStatus) (api.IPFSPinStatus, error) {
	if !cid.Defined() {
		return api.IPFSPinStatusUnpinned, errors.New("undefined CID")
	}
	ctx, cancel := c.withTimeout(ctx, c.cfg.IPFSRequestTimeout, "ipfs_request_timeout")
	defer cancel()
	q := url.Values{"arg": {cid.String()}, "type": {string(mode)}, "stream": {"true"}, "names": {"false"}}
	s, err := c.post(ctx, c.short, "pin/ls", q, nil, "")
	if isNotPinned(err) {
		return api.IPFSPinStatusUnpinned, nil
	}
	if err != nil {
		return api.IPFSPinStatusUnpinned, err
	}
	defer s.close()
	var line pinLsLine
	if err := s.next(&line); err != nil {
		if errors.Is(err, io.EOF) {
			return api.IPFSPinStatusUnpinned, nil
		}
		return api.IPFSPinStatusUnpinned, err
	}
	if err := s.finish(); err != nil {
		return api.IPFSPinStatusUnpinned, err
	}
	return pinStatus(line.Type), nil
}

// swarmConnect connects kubo to each address in parallel, one request per
// address because kubo's swarm/connect stops at the first failure.
func (c *Connector) swarmConnect(ctx context.Context, pool semaphore, addrs []api.Multiaddr) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, a := range addrs {
		wg.Go(func() {
			actx, cancel := c.withTimeout(ctx, swarmConnectTimeout, "swarm connect")
			defer cancel()
			s, err := c.post(actx, pool, "swarm/connect", url.Values{"arg": {a.String()}}, nil, "")
			if err == nil {
				err = s.finish()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("swarm connect %s: %w", a, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
