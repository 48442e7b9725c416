package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
)

// ctlOutput prints API replies and errors in the selected encoding: the
// reference's text formats, or JSON indented by four spaces, one value per
// stream item.
type ctlOutput struct {
	json   bool
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time // for relative times in text
}

func newCtlOutput(c *Context) (*ctlOutput, error) {
	out := &ctlOutput{stdout: c.Stdout, stderr: c.Stderr, now: time.Now}
	switch enc := c.String("encoding"); enc {
	case "text":
	case "json":
		out.json = true
	default:
		return nil, Usagef("unsupported encoding %q: want text or json", enc)
	}
	return out, nil
}

// printEach returns a stream callback that prints every item.
func printEach[T any](o *ctlOutput) func(T) error {
	return func(v T) error { return o.print(v) }
}

// print writes one reply value.
func (o *ctlOutput) print(v any) error {
	var text string
	if o.json {
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return fmt.Errorf("encoding the output: %w", err)
		}
		text = string(b) + "\n"
	} else {
		var err error
		if text, err = o.text(v); err != nil {
			return err
		}
	}
	_, err := io.WriteString(o.stdout, text)
	return err
}

func (o *ctlOutput) text(v any) (string, error) {
	switch v := v.(type) {
	case api.ID:
		return textID(v), nil
	case api.GlobalPinInfo:
		return textGlobalPinInfo(v), nil
	case api.Pin:
		return textPin(v), nil
	case api.VersionInfo:
		return v.Version + "\n", nil
	case []string:
		var b strings.Builder
		for _, line := range v {
			b.WriteString(line + "\n")
		}
		return b.String(), nil
	case []api.Metric:
		var b strings.Builder
		for _, m := range v {
			b.WriteString(textMetric(m, o.now()))
		}
		return b.String(), nil
	case []api.Alert:
		var b strings.Builder
		for _, a := range v {
			b.WriteString(textAlert(a, o.now()))
		}
		return b.String(), nil
	case api.GlobalRepoGC:
		return textRepoGC(v), nil
	case client.BandwidthByProtocol:
		return textBandwidth(v), nil
	case []api.PolicyReload:
		var b strings.Builder
		for _, r := range v {
			b.WriteString(textPolicyReload(r))
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("no text format for %T", v)
}

// fail reports err the way the reference does (an api.Error, or code 0 for
// errors that did not come from the API) and returns the exit error.
func (o *ctlOutput) fail(err error) error {
	e := api.Error{Message: err.Error()}
	errors.As(err, &e)
	if o.json {
		b, _ := json.MarshalIndent(e, "", "    ")
		fmt.Fprintf(o.stdout, "%s\n", b)
	} else {
		fmt.Fprintf(o.stdout, "An error occurred:\n  Code: %d\n  Message: %s\n", e.Code, e.Message)
	}
	return Exit(ctlExitCode(err), errReported)
}

func sortedAddrs(addrs []api.Multiaddr) []string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	slices.Sort(s)
	return s
}

// textID is the block of id and peers ls.
func textID(id api.ID) string {
	var b strings.Builder
	if id.Error != "" {
		fmt.Fprintf(&b, "%s | ERROR: %s\n", id.ID, id.Error)
		return b.String()
	}
	fmt.Fprintf(&b, "%s | %s | Sees %d other peers\n", id.ID, id.Peername, len(id.ClusterPeers)-1)
	b.WriteString("  > Addresses:\n")
	for _, a := range sortedAddrs(id.Addresses) {
		fmt.Fprintf(&b, "    - %s\n", a)
	}
	if id.IPFS.Error != "" {
		fmt.Fprintf(&b, "  > IPFS ERROR: %s\n", id.IPFS.Error)
		return b.String()
	}
	fmt.Fprintf(&b, "  > IPFS: %s\n", id.IPFS.ID)
	for _, a := range sortedAddrs(id.IPFS.Addresses) {
		fmt.Fprintf(&b, "    - %s\n", a)
	}
	if id.PolicySHA256 != "" {
		fmt.Fprintf(&b, "  > Policy: sha256 %s\n", id.PolicySHA256)
	}
	return b.String()
}

// textPolicyReload is one peer's line of policy reload.
func textPolicyReload(r api.PolicyReload) string {
	if r.Error != "" {
		active := ""
		switch {
		case r.PolicySHA256 == "":
			active = " (no policy active)"
		case !strings.Contains(r.Error, r.PolicySHA256): // else the error names it
			active = " (still running sha256 " + r.PolicySHA256 + ")"
		}
		return fmt.Sprintf("%s | %s | ERROR: %s%s\n", r.Peer, r.Peername, r.Error, active)
	}
	if r.PolicySHA256 == "" {
		return fmt.Sprintf("%s | %s | no policy: cluster.policy_file is empty\n", r.Peer, r.Peername)
	}
	return fmt.Sprintf("%s | %s | reloaded: sha256 %s\n", r.Peer, r.Peername, r.PolicySHA256)
}

// textGlobalPinInfo is the block of status: one line per peer, in peer ID
// order.
func textGlobalPinInfo(gpi api.GlobalPinInfo) string {
	var b strings.Builder
	b.WriteString(gpi.Cid.String())
	if gpi.Name != "" {
		fmt.Fprintf(&b, " | %s", gpi.Name)
	}
	b.WriteString(":\n")
	for _, id := range gpi.SortedPeers() {
		pi := gpi.PeerMap[id]
		name := pi.PeerName
		if name == "" {
			name = id
		}
		fmt.Fprintf(&b, "    > %-20s : %s", name, strings.ToUpper(pi.Status.String()))
		if pi.Error != "" {
			fmt.Fprintf(&b, ": %s", pi.Error)
		}
		ts, _ := pi.TS.MarshalText()
		fmt.Fprintf(&b, " | %s | Attempts: %d | Priority: %t\n", ts, pi.AttemptCount, pi.PriorityPin)
	}
	return b.String()
}

// textPin is the line of pin ls.
func textPin(p api.Pin) string {
	var b strings.Builder
	typ := strings.ToUpper(p.Type.String())
	if p.Mode == api.PinModeDirect {
		typ += "-DIRECT"
	}
	fmt.Fprintf(&b, "%s | %s | %s | ", p.Cid, p.Name, typ)
	if p.IsPinEverywhere() {
		b.WriteString("Repl. Factor: -1 | Allocations: [everywhere]")
	} else {
		allocs := make([]string, len(p.Allocations))
		for i, a := range p.Allocations {
			allocs[i] = a.String()
		}
		slices.Sort(allocs)
		fmt.Fprintf(&b, "Repl. Factor: %d--%d | Allocations: %s", p.ReplicationFactorMin, p.ReplicationFactorMax, allocs)
	}
	switch p.MaxDepth {
	case 0:
		b.WriteString(" | Direct")
	case -1:
		b.WriteString(" | Recursive")
	default:
		fmt.Fprintf(&b, " | Recursive-%d", p.MaxDepth)
	}
	if len(p.Metadata) == 0 {
		b.WriteString(" | Metadata: no")
	} else {
		b.WriteString(" | Metadata: yes")
	}
	expire := "∞"
	if !p.ExpireAt.IsZero() {
		expire = p.ExpireAt.Format(time.DateTime)
	}
	added := "unknown"
	if !p.Timestamp.IsZero() {
		added = p.Timestamp.Format(time.DateTime)
	}
	fmt.Fprintf(&b, " | Exp: %s | Added: %s\n", expire, added)
	return b.String()
}

// textMetric is a line of health metrics <name>. A freespace weight is
// shown as a size.
func textMetric(m api.Metric, now time.Time) string {
	v := m.Value
	if m.Name == "freespace" && m.Weight > 0 {
		v = humanBytes(uint64(m.Weight))
	}
	return fmt.Sprintf("%s | %s: %s | Expires in: %s\n", m.Peer, m.Name, v, humanTime(time.Unix(0, m.Expire), now))
}

// textAlert is a line of health alerts.
func textAlert(a api.Alert, now time.Time) string {
	return fmt.Sprintf("%s: %s. Expired at: %s. Triggered at: %s\n",
		a.Peer, a.Name, humanTime(time.Unix(0, a.Expire), now), humanTime(a.TriggeredAt, now))
}

// textRepoGC is the block of ipfs gc: per peer (by peer ID), the collected
// CIDs.
func textRepoGC(gc api.GlobalRepoGC) string {
	var b strings.Builder
	peers := make([]string, 0, len(gc.PeerMap))
	for id := range gc.PeerMap {
		peers = append(peers, id)
	}
	slices.Sort(peers)
	for _, id := range peers {
		item := gc.PeerMap[id]
		name := id
		if item.Peername != "" {
			name = item.Peername
		}
		if item.Error != "" {
			fmt.Fprintf(&b, "%-15s | ERROR: %s\n", name, item.Error)
		} else {
			fmt.Fprintf(&b, "%-15s\n", name)
		}
		b.WriteString("  > CIDs:\n")
		for _, k := range item.Keys {
			if k.Error != "" {
				fmt.Fprintf(&b, "    - ERROR: %s\n", k.Error)
				continue
			}
			fmt.Fprintf(&b, "    - %s\n", k.Key)
		}
	}
	return b.String()
}

// textBandwidth is the table of health bandwidth, by protocol.
func textBandwidth(bw client.BandwidthByProtocol) string {
	var b strings.Builder
	protocols := make([]string, 0, len(bw))
	for p := range bw {
		protocols = append(protocols, p)
	}
	slices.Sort(protocols)
	for _, p := range protocols {
		s := bw[p]
		fmt.Fprintf(&b, "%25s: In: %7s. Out: %7s. RateIn: %.2fB/s. RateOut: %.2fB/s\n",
			p, humanBytes(uint64(s.TotalIn)), humanBytes(uint64(s.TotalOut)), s.RateIn, s.RateOut)
	}
	return b.String()
}

// humanBytes writes a size in SI units the way go-humanize's Bytes does,
// which is what the reference prints: "12 GB", "1.5 kB", "9 B".
func humanBytes(n uint64) string {
	if n < 10 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	e := math.Floor(math.Log(float64(n)) / math.Log(1000))
	val := math.Floor(float64(n)/math.Pow(1000, e)*10+0.5) / 10
	format := "%.0f %s"
	if val < 10 {
		format = "%.1f %s"
	}
	return fmt.Sprintf(format, val, units[int(e)])
}

const (
	day   = 24 * time.Hour
	week  = 7 * day
	month = 30 * day
	year  = 12 * month
)

// relTimeStep is a row of go-humanize's table for relative times: below
// the bound, the format applies, with the difference counted in unit.
type relTimeStep struct {
	below  time.Duration
	format string
	unit   time.Duration
}

var relTimeSteps = []relTimeStep{
	{time.Second, "now", 0},
	{2 * time.Second, "1 second %s", 0},
	{time.Minute, "%d seconds %s", time.Second},
	{2 * time.Minute, "1 minute %s", 0},
	{time.Hour, "%d minutes %s", time.Minute},
	{2 * time.Hour, "1 hour %s", 0},
	{day, "%d hours %s", time.Hour},
	{2 * day, "1 day %s", 0},
	{week, "%d days %s", day},
	{2 * week, "1 week %s", 0},
	{month, "%d weeks %s", week},
	{2 * month, "1 month %s", 0},
	{year, "%d months %s", month},
	{18 * month, "1 year %s", 0},
	{2 * year, "2 years %s", 0},
	{37 * year, "%d years %s", year},
	{math.MaxInt64, "a long while %s", 0},
}

// humanTime writes t relative to now as go-humanize's Time does:
// "25 seconds from now", "3 minutes ago", "now".
func humanTime(t, now time.Time) string {
	label, diff := "ago", now.Sub(t)
	if t.After(now) {
		label, diff = "from now", t.Sub(now)
	}
	step := relTimeSteps[len(relTimeSteps)-1]
	for _, s := range relTimeSteps {
		if s.below > diff {
			step = s
			break
		}
	}
	switch {
	case step.unit != 0:
		return fmt.Sprintf(step.format, int64(diff/step.unit), label)
	case strings.Contains(step.format, "%s"):
		return fmt.Sprintf(step.format, label)
	default:
		return step.format
	}
}
