package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/logging"
)

// Exit codes of the ctl, as the reference's.
const (
	ctlExitLocal    = 1   // bad input, transport error, anything not from the API
	ctlExitAPI      = 2   // the API answered with an error
	ctlExitDeadline = 62  // ETIME: a timeout expired
	ctlExitCanceled = 125 // ECANCELED
)

// errReported marks an error the ctl has already printed; cli.Run then only
// sets the exit code.
var errReported = errors.New("")

const ctlDescription = `
ipfs-cluster-ctl is a tool to manage IPFS Cluster nodes.

Use "ipfs-cluster-ctl help" to list all available commands and
"ipfs-cluster-ctl help <command>" to get usage information for a
specific one.

ipfs-cluster-ctl uses the IPFS Cluster API to perform requests and
display responses in a user-readable format. The location of the IPFS
Cluster server is assumed to be ` + client.DefaultHost + `, but can be configured
with the --host option. If several multiaddresses are specified
(comma-separated), requests will be sent to the first one and fail-over
over to the others. This also works for dns-based addresses which resolve
to multiple values.

For feedback, bug reports or any additional information, visit
https://github.com/ipfs-cluster/ipfs-cluster.
`

// Ctl is the command tree of ipfs-cluster-ctl, the REST API client.
func Ctl() *Command {
	return &Command{
		Name:        "ipfs-cluster-ctl",
		Usage:       "CLI for IPFS Cluster",
		Description: ctlDescription,
		Flags: append(ctlGlobalFlags(),
			Flag{Name: "version", Aliases: []string{"v"}, Kind: BoolFlag, Usage: "print the version"}),
		Subcommands: ctlCommands(),
		Action: func(c *Context) error {
			switch {
			case c.Bool("version"):
				fmt.Fprintf(c.Stdout, "ipfs-cluster-ctl version %s\n", api.Version)
			case len(c.Args) > 0:
				return unknownCommand(c.Args[0])
			default:
				c.printHelp(c.Stdout)
			}
			return nil
		},
	}
}

// ctlSession is what a ctl command that calls the API works with.
type ctlSession struct {
	ctx    context.Context
	cmd    *Context
	client *client.Client
	out    *ctlOutput
}

// warnIgnored says on stderr which --filter names the peer will ignore,
// as it does names it does not know: the reference accepts such a list.
func (s *ctlSession) warnIgnored(kind string, names []string) {
	for _, n := range names {
		fmt.Fprintf(s.cmd.Stderr, "ignoring --filter %q: no %s has that name\n", n, kind)
	}
}

// ctlAction wraps a command body: it checks the global flags, connects the
// client, and turns the body's error into the reference's error output and
// exit code. Usage errors pass through to cli.Run unchanged.
func ctlAction(body func(*ctlSession) error) func(*Context) error {
	return func(c *Context) error {
		out, err := newCtlOutput(c)
		if err != nil {
			return err
		}
		ctx, stop, cl, err := ctlConnect(c)
		defer stop()
		if err == nil {
			err = body(&ctlSession{ctx: ctx, cmd: c, client: cl, out: out})
		}
		var ue *UsageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		// As the reference, errors in the files to send go to stderr,
		// not in the API error block on stdout.
		var ie *client.InputError
		if errors.As(err, &ie) {
			fmt.Fprintf(c.Stderr, "Error: %s\n", err)
			return Exit(ctlExitLocal, errReported)
		}
		var we *waitError
		if errors.As(err, &we) {
			fmt.Fprintf(c.Stderr, "%s\n", we)
			return Exit(ctlExitCode(we.err), errReported)
		}
		return out.fail(err)
	}
}

// waitError is a --wait that did not see the status it waited for. The
// reference reports it on stderr, not as an API error block, and exits
// with 62 for a timeout.
type waitError struct{ err error }

func (e *waitError) Error() string {
	err := e.err
	// The request that was cut short adds nothing to "deadline exceeded".
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return "error waiting for pin status: " + err.Error()
}

func (e *waitError) Unwrap() error { return e.err }

// ctlConnect prepares a command that talks to the API: logging at error
// level (debug with --debug), a context that SIGINT and SIGTERM cancel,
// and the client built from the global flags. stop is to be deferred even
// when err is set.
func ctlConnect(c *Context) (ctx context.Context, stop context.CancelFunc, cl *client.Client, err error) {
	level := zerolog.ErrorLevel
	if c.Bool("debug") {
		level = zerolog.DebugLevel
	}
	logging.Setup(c.Stderr, logging.Levels{Default: level})
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cl, err = ctlClient(ctx, c)
	return ctx, stop, cl, err
}

// ctlClient builds the API client from the global flags.
func ctlClient(ctx context.Context, c *Context) (*client.Client, error) {
	if c.Int("timeout") < 0 {
		return nil, Usagef("invalid --timeout %d: the number of seconds cannot be negative (0: no timeout)", c.Int("timeout"))
	}
	if secret := c.String("secret"); secret != "" {
		if _, err := hex.DecodeString(secret); err != nil {
			return nil, Usagef("invalid --secret: not hexadecimal: %v", err)
		}
	}
	cfg := client.Config{
		Timeout:      time.Duration(c.Int("timeout")) * time.Second,
		SSL:          c.Bool("https"),
		NoVerifyCert: c.Bool("no-check-certificate"),
	}
	cfg.Username, cfg.Password, _ = strings.Cut(c.String("basic-auth"), ":")
	if cfg.Username != "" && !cfg.SSL && !c.Bool("force-http") {
		log := logging.For("cluster-ctl")
		log.Warn().Msg(`SSL automatically enabled with basic auth credentials. Set "force-http" to disable`)
		cfg.SSL = true
	}
	hosts, err := expandDNSHosts(ctx, strings.Split(c.String("host"), ","), cfg.SSL)
	if err != nil {
		return nil, err
	}
	cfg.Hosts = hosts
	cl, err := client.New(cfg)
	if err != nil {
		return nil, Usagef("invalid --host: %v", err)
	}
	return cl, nil
}

// expandDNSHosts replaces each /dns, /dns4 and /dns6 address by one address
// per IP it resolves to, so that failover covers every IP. Not with TLS,
// where the certificate is for the name.
func expandDNSHosts(ctx context.Context, hosts []string, ssl bool) ([]string, error) {
	var out []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		m, err := ma.NewMultiaddr(h)
		if ssl || err != nil {
			// client.New reports what is not a valid address.
			out = append(out, h)
			continue
		}
		first, rest := ma.SplitFirst(m)
		network := map[int]string{ma.P_DNS: "ip", ma.P_DNS4: "ip4", ma.P_DNS6: "ip6"}[first.Code()]
		if network == "" {
			out = append(out, h)
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, network, first.Value())
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", h, err)
		}
		for _, ip := range ips {
			ip = ip.Unmap()
			proto := "ip4"
			if ip.Is6() {
				proto = "ip6"
			}
			out = append(out, "/"+proto+"/"+ip.String()+rest.String())
		}
	}
	return out, nil
}

// ctlExitCode maps an error to the reference's exit codes.
func ctlExitCode(err error) int {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ctlExitDeadline
	case errors.Is(err, context.Canceled):
		return ctlExitCanceled
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return ctlExitDeadline
	}
	var apiErr api.Error
	if errors.As(err, &apiErr) && apiErr.Code != 0 {
		return ctlExitAPI
	}
	return ctlExitLocal
}

// printOne is the action of a command that takes no arguments and prints
// what one client call returns.
func printOne(call func(s *ctlSession) (any, error)) func(*Context) error {
	return ctlAction(func(s *ctlSession) error {
		if err := s.args(0, 0); err != nil {
			return err
		}
		v, err := call(s)
		if err != nil {
			return err
		}
		return s.out.print(v)
	})
}

// ctlGlobalFlags are ctl's connection and output flags, which the
// top-level add and import take too.
func ctlGlobalFlags() []Flag {
	return []Flag{
		{Name: "host", Aliases: []string{"l"}, Kind: StringFlag, Default: client.DefaultHost,
			Usage: "API endpoint multiaddresses (comma-separated)"},
		{Name: "secret", Kind: StringFlag,
			Usage: "cluster secret (32 byte pnet-key), only for libp2p endpoints"},
		{Name: "https", Aliases: []string{"s"}, Kind: BoolFlag, Usage: "use https to connect to the API"},
		{Name: "no-check-certificate", Kind: BoolFlag,
			Usage: "do not verify server TLS certificate. only valid with --https flag"},
		{Name: "encoding", Aliases: []string{"enc"}, Kind: StringFlag, Default: "text",
			Usage: "output format encoding [text, json]"},
		{Name: "timeout", Aliases: []string{"t"}, Kind: IntFlag, Default: "0",
			Usage: "number of seconds to wait before timing out a request"},
		{Name: "debug", Aliases: []string{"d"}, Kind: BoolFlag, Usage: "set debug log level"},
		{Name: "basic-auth", Kind: StringFlag, EnvVar: "CLUSTER_CREDENTIALS",
			Usage: "<user>[:<password>] credentials; imply --https"},
		{Name: "force-http", Aliases: []string{"f"}, Kind: BoolFlag,
			Usage: "force HTTP. only valid when using BasicAuth"},
	}
}
