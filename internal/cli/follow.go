package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon"
	"ipfs-cluster/internal/ipfsconn"
	"ipfs-cluster/internal/logging"
	"ipfs-cluster/internal/state"
)

// followProgram is the name the follower tool goes by in its messages.
const followProgram = "ipfs-cluster-follow"

const (
	// followDefaultDir is the folder of the followers' configurations,
	// one subfolder per cluster, under the home folder.
	followDefaultDir = ".ipfs-cluster-follow"
	// followSocket is the REST API's unix socket in a follower's folder.
	followSocket = "api-socket"
	// defaultGateway resolves a DNSLink configuration name.
	defaultGateway = "127.0.0.1:8080"
	// ipfsWait is how long run waits for kubo to answer.
	ipfsWait = 2 * time.Minute
)

// Follow is the command tree of ipfs-cluster-follow: follower peers of
// clusters run by others, each configured from a template URL the
// cluster's operators publish.
func Follow() *Command {
	return &Command{
		Name:      followProgram,
		Usage:     "IPFS Cluster Follower",
		ArgsUsage: "<clusterName> [info|init|run|list]",
		Description: `
Runs follower peers: peers that pin what a cluster's trusted peers decide,
and cannot change the pinset. Each followed cluster has its identity,
configuration and data in <config>/<clusterName>.

  ipfs-cluster-follow                          lists the followed clusters
  ipfs-cluster-follow <clusterName> init URL   sets a follower up from the cluster's template
  ipfs-cluster-follow <clusterName> run        runs it (in the foreground)
  ipfs-cluster-follow <clusterName> list       lists its pins and their status
  ipfs-cluster-follow <clusterName> [info]     shows its folder, source and whether it runs`,
		Flags: []Flag{
			{Name: "config", Aliases: []string{"c"}, Kind: StringFlag, EnvVar: "IPFS_CLUSTER_PATH", Usage: "path to the followers configuration and data folder (default: ~/" + followDefaultDir + ")"},
			versionFlag,
		},
		Named: followCluster,
		Action: func(c *Context) error {
			if c.Bool("version") {
				fmt.Fprintf(c.Stdout, "%s version %s\n", followProgram, api.Version)
				return nil
			}
			return listFollowed(c)
		},
	}
}

// followSubcommand is the follower tool mounted as "ipfs-cluster follow".
func followSubcommand() *Command {
	f := Follow()
	f.Name = "follow"
	f.Usage = "run follower peers of clusters run by others (ipfs-cluster-follow)"
	return f
}

var gatewayFlag = Flag{Name: "gateway", Kind: StringFlag, Default: defaultGateway, EnvVar: "IPFS_GATEWAY", Hidden: true, Usage: "gateway that resolves a DNSLink configuration name"}

// followCluster is the command tree of one followed cluster. The name is
// a folder under the followers' one, never a path out of it.
func followCluster(name string) *Command {
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return &Command{Name: name, Action: func(*Context) error {
			return Usagef("invalid cluster name %q: it names a folder in the followers' folder, without / or \\", name)
		}}
	}
	info := func(c *Context) error {
		if len(c.Args) > 0 {
			return unknownCommand(c.Args[0])
		}
		return followInfo(c, name)
	}
	return &Command{
		Name:   name,
		Usage:  fmt.Sprintf("follower peer management for %q", name),
		Action: info,
		Subcommands: []*Command{
			{Name: "info", Usage: "displays information for this peer", Action: info},
			{
				Name:      "init",
				Usage:     "initializes the follower peer",
				ArgsUsage: "<template_URL>",
				Description: fmt.Sprintf(`
Sets up a follower peer of %q: a new identity, and a service.json that
points to the template URL, fetched at every start. A URL without http://
or https:// is a DNSLink name, resolved through the gateway. Fails if the
folder exists already: delete it to start over.`, name),
				Flags: []Flag{gatewayFlag},
				Action: func(c *Context) error {
					if len(c.Args) != 1 {
						return Usagef("init takes the configuration URL, got %d arguments", len(c.Args))
					}
					return followInit(c, name, c.Args[0], false)
				},
			},
			{
				Name:  "run",
				Usage: "runs the follower peer",
				Description: `
Runs the follower peer in the foreground until SIGINT or SIGTERM. Its REST
API listens only on the unix socket api-socket in its folder
($CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS overrides it).`,
				Flags: []Flag{
					{Name: "init", Kind: StringFlag, Usage: "initialize the follower peer with this template URL first, unless done already"},
					gatewayFlag,
				},
				Action: func(c *Context) error { return followRun(c, name) },
			},
			{
				Name:  "list",
				Usage: "list items in the peer's pinset",
				Description: `
Lists the pins of this follower peer with their status here; when the peer
is not running, the pinset it stored, each as "offline".`,
				Action: func(c *Context) error { return followList(c, name) },
			},
		},
	}
}

// followRoot is the folder of the followers' configurations.
func followRoot(c *Context) (string, error) { return folderFlag(c, followDefaultDir) }

// followDir is the folder of the follower of cluster name; ok is false,
// with the reference's hint printed, when it was never set up.
func followDir(c *Context, name string) (dir string, ok bool, err error) {
	root, err := followRoot(c)
	if err != nil {
		return "", false, err
	}
	dir = filepath.Join(root, name)
	if _, err := os.Stat(filepath.Join(dir, config.ServiceFile)); err != nil {
		fmt.Fprintf(c.Stdout, "\nThis cluster peer has not been initialized.\n\nTry running \"%s %s init <config-url>\" first.\n", followProgram, name)
		return dir, false, nil
	}
	return dir, true, nil
}

func listFollowed(c *Context) error {
	root, err := followRoot(c)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", root, err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, e.Name(), config.ServiceFile)); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		fmt.Fprintf(c.Stdout, `
No clusters configured yet!

If this is the first time you are running %[1]s,
be sure to check out the usage documentation. Here are some
examples to get you going:

$ %[1]s --help                     - general description and usage help
$ %[1]s <clusterName> --help       - Help and subcommands for the <clusterName>'s follower peer
$ %[1]s <clusterName> info --help  - Help for the "info" subcommand (same for others).
`, followProgram)
		return nil
	}
	fmt.Fprintf(c.Stdout, "Configurations found for %d follower peers. For info and help, try running:\n\n", len(names))
	for _, n := range names {
		fmt.Fprintf(c.Stdout, "%s %q\n", followProgram, n)
	}
	fmt.Fprintf(c.Stdout, "\nTip: \"%s --help\" for help and examples.\n", followProgram)
	return nil
}

// sourceURL turns what init was given into the template's URL: a name
// without a scheme is a DNSLink name served by the gateway.
func sourceURL(c *Context, given string) string {
	if strings.HasPrefix(given, "http://") || strings.HasPrefix(given, "https://") {
		return given
	}
	gw := c.String("gateway")
	fmt.Fprintf(c.Stdout, "%s will be assumed to be an DNSLink-powered address: /ipns/%s.\n", given, given)
	fmt.Fprintf(c.Stdout, "It will be resolved using the local IPFS daemon's gateway (%s).\n", gw)
	fmt.Fprintln(c.Stdout, "If this is not the case, specify the full url starting with http:// or https://.")
	fmt.Fprintln(c.Stdout, "(You can override the gateway URL by setting IPFS_GATEWAY)")
	fmt.Fprintln(c.Stdout)
	if !strings.Contains(gw, "://") {
		gw = "http://" + gw
	}
	return strings.TrimSuffix(gw, "/") + "/ipns/" + given
}

// followInit sets the follower of cluster name up from the template URL
// given. The template is fetched and checked first: nothing is written for
// a URL that does not serve a valid configuration. quiet (run --init)
// skips a folder set up already.
func followInit(c *Context, name, given string, quiet bool) error {
	root, err := followRoot(c)
	if err != nil {
		return err
	}
	dir := filepath.Join(root, name)
	if _, err := os.Stat(dir); err == nil {
		if quiet {
			fmt.Fprintln(c.Stdout, "Configuration for this cluster already exists. Skipping initialization.")
			fmt.Fprintf(c.Stdout, "If you wish to re-initialize, simply delete %s\n\n", dir)
			return nil
		}
		return Exit(1, fmt.Errorf("configuration for this cluster already exists: delete %s to re-initialize", dir))
	}
	url := sourceURL(c, given)
	if _, err := config.FetchSource(url); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	ident, err := config.NewIdentity()
	if err != nil {
		return err
	}
	if err := ident.Save(dir); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Identity written to %s.\n", filepath.Join(dir, config.IdentityFile))
	if err := config.SaveSource(dir, url); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Configuration written to %s.\n", filepath.Join(dir, config.ServiceFile))
	fmt.Fprintf(c.Stdout, "Cluster %q follower peer initialized.\n\n", name)
	fmt.Fprintf(c.Stdout, "You can now use \"%s %s run\" to start a follower peer for this cluster.\n", followProgram, name)
	fmt.Fprintln(c.Stdout, "(Remember to start your IPFS daemon before)")
	return nil
}

// followClient reaches the follower's REST API: its socket, or the
// address $CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS makes it listen on.
func followClient(c *Context, dir string) (*client.Client, error) {
	addr := c.Getenv("CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS")
	if addr == "" {
		addr = "/unix" + filepath.Join(dir, followSocket)
	}
	return client.New(client.Config{Hosts: []string{addr}, Timeout: 10 * time.Second})
}

func followInfo(c *Context, name string) error {
	dir, ok, err := followDir(c, name)
	if err != nil || !ok {
		return cmp.Or(err, Exit(1, errors.New("")))
	}
	source := "none: the configuration is in service.json"
	cfg, err := config.Load(dir, c.Getenv)
	switch {
	case errors.Is(err, config.ErrFetchingSource):
		data, _ := os.ReadFile(filepath.Join(dir, config.ServiceFile))
		url, _ := config.SourceOf(data)
		source = fmt.Sprintf("failed retrieving configuration source (%s): %v", url, err)
		cfg = config.Default()
		if err := cfg.ApplyEnv(c.Getenv); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("reading the configuration in %s: %w", dir, err)
	case cfg.Source != "":
		source = fmt.Sprintf("Available (%s)", cfg.Source)
	}
	fmt.Fprintf(c.Stdout, "Information about follower peer for Cluster %q:\n\n", name)
	fmt.Fprintf(c.Stdout, "Config folder: %s\n", dir)
	fmt.Fprintf(c.Stdout, "Config source URL: %s\n", source)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	online := false
	if cl, err := followClient(c, dir); err == nil {
		_, err = cl.Version(ctx)
		online = err == nil
	}
	fmt.Fprintf(c.Stdout, "Cluster Peer online: %t\n", online)
	fmt.Fprintf(c.Stdout, "IPFS peer online: %t\n", ipfsOnline(ctx, cfg) == nil)
	return nil
}

// ipfsOnline asks the configured kubo for its ID.
func ipfsOnline(ctx context.Context, cfg *config.Config) error {
	conn, err := ipfsconn.New(ipfsconn.Config{NodeMultiaddress: cfg.IPFSConnector.IPFSHTTP.NodeMultiaddress}, logging.For("ipfsconn"))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.ID(ctx)
	return err
}

func followRun(c *Context, name string) error {
	if given := c.String("init"); given != "" {
		if err := followInit(c, name, given, true); err != nil {
			return err
		}
	}
	dir, ok, err := followDir(c, name)
	if err != nil || !ok {
		return cmp.Or(err, Exit(1, errors.New("")))
	}
	levels, err := logging.ParseLevels("info,restapilog:error")
	if err != nil {
		return err
	}
	logging.Setup(c.Stderr, levels)
	tuneGC(c.Getenv)
	cfg, err := config.Load(dir, c.Getenv)
	if err != nil {
		return fmt.Errorf("reading the configuration in %s: %w", dir, err)
	}
	fmt.Fprintf(c.Stdout, "Starting the IPFS Cluster follower peer for %q.\nCTRL-C to stop it.\n", name)
	fmt.Fprintf(c.Stdout, "Checking if IPFS is online (will wait for %s)...\n", ipfsWait)
	if err := waitForIPFS(c, cfg); err != nil {
		return err
	}
	if err := asFollower(cfg, dir, c.Getenv); err != nil {
		return err
	}
	return runPeer(c, dir, cfg, daemon.Options{})
}

// asFollower turns a cluster's template into a follower's configuration,
// as the reference's tool does: follower mode, the REST API alone and on
// the folder's unix socket (the template's API settings are the trusted
// peers'), no metrics endpoint.
func asFollower(cfg *config.Config, dir string, getenv func(string) string) error {
	cfg.Cluster.FollowerMode = true
	cfg.API.RestAPI = config.Default().API.RestAPI
	cfg.API.RestAPI.HTTPListenMultiaddress = config.StringList{"/unix" + filepath.Join(dir, followSocket)}
	cfg.Observations.Metrics.EnableStats = false
	if err := cfg.ApplyEnv(getenv); err != nil {
		return err
	}
	return cfg.Validate()
}

// waitForIPFS waits until the configured kubo answers, up to ipfsWait.
func waitForIPFS(c *Context, cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), ipfsWait)
	defer cancel()
	for i := 0; ; i++ {
		attempt, stop := context.WithTimeout(ctx, 5*time.Second)
		err := ipfsOnline(attempt, cfg)
		stop()
		if err == nil {
			return nil
		}
		if i%10 == 0 {
			fmt.Fprintf(c.Stdout, "waiting for IPFS to become available on %s...\n", cfg.IPFSConnector.IPFSHTTP.NodeMultiaddress)
		}
		select {
		case <-ctx.Done():
			return Exit(1, fmt.Errorf("timed out waiting for IPFS at %s: %w", cfg.IPFSConnector.IPFSHTTP.NodeMultiaddress, err))
		case <-time.After(time.Second):
		}
	}
}

func followList(c *Context, name string) error {
	dir, ok, err := followDir(c, name)
	if err != nil || !ok {
		return cmp.Or(err, Exit(1, errors.New("")))
	}
	printPin := func(ci api.Cid, status, name, err string) {
		if err != "" {
			name += " (" + err + ")"
		}
		fmt.Fprintf(c.Stdout, "%-20s %s %s\n", status, ci, name)
	}
	ctx := context.Background()
	cl, err := followClient(c, dir)
	if err != nil {
		return err
	}
	if _, err := cl.Version(ctx); err == nil {
		return cl.StatusAll(ctx, api.TrackerStatusUndefined, true, func(gpi api.GlobalPinInfo) error {
			for _, pi := range gpi.PeerMap { // local: this peer's only
				printPin(gpi.Cid, pi.Status.String(), gpi.Name, pi.Error)
			}
			return nil
		})
	}
	// Not running: the pinset it stored.
	return openState(dir, func(db *state.DB) error {
		return db.List(ctx, func(p api.Pin) error {
			printPin(p.Cid, "offline", p.Name, "")
			return nil
		})
	})
}
