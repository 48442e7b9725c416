package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/logging"
	"ipfs-cluster/internal/p2p"
)

// BuildVersion is the version of this build, stamped by the Makefile.
var BuildVersion = "devel"

var serviceFlags = []Flag{
	{Name: "config", Aliases: []string{"c"}, Kind: StringFlag, EnvVar: "IPFS_CLUSTER_PATH", Usage: "path to the configuration folder (default: ~/" + config.DefaultDir + ")"},
	{Name: "force", Aliases: []string{"f"}, Kind: BoolFlag, Usage: "overwrite or delete without asking"},
	{Name: "debug", Aliases: []string{"d"}, Kind: BoolFlag, Usage: "log everything at debug level"},
	{Name: "loglevel", Aliases: []string{"l"}, Kind: StringFlag, Default: "info", EnvVar: "IPFS_CLUSTER_LOG_LEVEL", Usage: "log levels, e.g. info,pintracker:debug"},
}

// Root is the ipfs-cluster command: the service commands plus ctl.
func Root() *Command {
	return &Command{
		Name:        "ipfs-cluster",
		Usage:       "an IPFS Cluster peer, its client and its tools in one binary",
		Flags:       append(serviceFlags, versionFlag),
		Subcommands: append(serviceCommands(), ctlSubcommand(), addCommand(true), importCommand(), followSubcommand(), policyCommand(), scriptCommand(), versionCommand()),
		Action:      topAction("ipfs-cluster"),
	}
}

var versionFlag = Flag{Name: "version", Aliases: []string{"v"}, Kind: BoolFlag, Usage: "print the version"}

// topAction runs a program given no command: --version prints the
// version; otherwise the help goes to stderr and the program fails.
func topAction(program string) func(*Context) error {
	return func(c *Context) error {
		if c.Bool("version") {
			fmt.Fprintf(c.Stdout, "%s version %s\n", program, api.Version)
			return nil
		}
		if len(c.Args) > 0 {
			return unknownCommand(c.Args[0])
		}
		c.printHelp(c.Stderr)
		return Exit(1, errors.New(""))
	}
}

// Service is the command tree of ipfs-cluster-service.
func Service() *Command {
	return &Command{
		Name:        "ipfs-cluster-service",
		Usage:       "runs an IPFS Cluster peer",
		Flags:       append(serviceFlags, versionFlag),
		Subcommands: append(serviceCommands(), versionCommand()),
		Action:      topAction("ipfs-cluster-service"),
	}
}

// ForProgram picks the command tree by the name the binary was invoked as.
func ForProgram(name string) *Command {
	switch strings.TrimSuffix(filepath.Base(name), ".exe") {
	case "ipfs-cluster-service":
		return Service()
	case "ipfs-cluster-ctl":
		return Ctl()
	case "ipfs-cluster-follow":
		return Follow()
	}
	return Root()
}

// ctlSubcommand is ctl mounted as "ipfs-cluster ctl".
func ctlSubcommand() *Command {
	c := Ctl()
	c.Name = "ctl"
	return c
}

func serviceCommands() []*Command {
	return []*Command{initCommand(), daemonCommand(), stateCommand()}
}

func versionCommand() *Command {
	return &Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *Context) error {
			fmt.Fprintf(c.Stdout, "%s\n", api.Version)
			if c.Parent != nil && c.Parent.Command.Name == "ipfs-cluster" {
				fmt.Fprintf(c.Stderr, "build %s\n", BuildVersion)
			}
			return nil
		},
	}
}

// configDir is --config, $IPFS_CLUSTER_PATH, or ~/.ipfs-cluster.
func configDir(c *Context) (string, error) { return folderFlag(c, config.DefaultDir) }

// folderFlag is the absolute path --config (or its variable) gives, or
// def in the home folder.
func folderFlag(c *Context, def string) (string, error) {
	if dir := c.String("config"); dir != "" {
		return filepath.Abs(dir)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --config given and no home folder: %w", err)
	}
	return filepath.Join(home, def), nil
}

// setupLogging applies --debug and --loglevel.
func setupLogging(c *Context) error {
	spec := c.String("loglevel")
	if c.Bool("debug") {
		spec = "debug"
	}
	levels, err := logging.ParseLevels(spec)
	if err != nil {
		return Usagef("%v", err)
	}
	logging.Setup(c.Stderr, levels)
	return nil
}

func initCommand() *Command {
	return &Command{
		Name:  "init",
		Usage: "create a configuration folder with service.json, identity.json and a secret",
		Description: `
Writes service.json (with a new random 32-byte cluster secret, the one
typed after --custom-secret, or $CLUSTER_SECRET) and identity.json (a new
Ed25519 key, kept if one exists) into the configuration folder. Other
CLUSTER_* variables set their keys, as they do for the daemon. An existing
service.json is only replaced with --force, and never while a peer runs on
the folder.

--peers writes the given multiaddresses (each ending in /p2p/<peer ID>) to
the peerstore file, and trusts only those peers (consensus.crdt.trusted_peers).`,
		Flags: []Flag{
			{Name: "consensus", Kind: StringFlag, Default: "crdt", Usage: "consensus component: crdt"},
			{Name: "datastore", Kind: StringFlag, Default: "pebble", Usage: "datastore: pebble"},
			{Name: "custom-secret", Aliases: []string{"s"}, Kind: BoolFlag, Usage: "prompt for the cluster secret (64 hex characters)"},
			{Name: "peers", Kind: StringFlag, Usage: "comma-separated multiaddresses of the cluster's peers: the peerstore file and trusted_peers"},
			{Name: "randomports", Kind: BoolFlag, Usage: "listen on random free ports instead of the defaults"},
		},
		Action: runInit,
	}
}

func runInit(c *Context) error {
	if len(c.Args) > 0 {
		return Usagef("init takes no arguments (remote configuration sources are not supported), got %q", c.Args[0])
	}
	if cons := c.String("consensus"); cons != "crdt" {
		return Usagef("--consensus %q: only crdt is available in this version", cons)
	}
	if ds := c.String("datastore"); ds != "pebble" {
		return Usagef("--datastore %q: only pebble is supported", ds)
	}
	dir, err := configDir(c)
	if err != nil {
		return err
	}
	servicePath := filepath.Join(dir, config.ServiceFile)
	if _, err := os.Stat(servicePath); err == nil && !c.Bool("force") {
		return fmt.Errorf("%s already exists: run with --force to overwrite it", servicePath)
	}
	var peers []peer.AddrInfo
	if s := c.String("peers"); s != "" {
		var addrs []string
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		if peers, err = p2p.ParsePeerAddrs(addrs); err != nil {
			return Usagef("--peers: %v", err)
		}
	}
	var secret string
	if c.Bool("custom-secret") {
		fmt.Fprint(c.Stderr, "Enter cluster secret (32-byte hex string): ")
		line, err := bufio.NewReader(c.Stdin).ReadString('\n')
		if err != nil && (!errors.Is(err, io.EOF) || line == "") {
			return fmt.Errorf("--custom-secret: read the secret from stdin: %w", err)
		}
		if secret = strings.TrimSpace(line); secret == "" {
			return Usagef("--custom-secret: no secret given")
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// A peer running on the folder would keep the old secret and ports
	// and fail at its next start.
	lock, err := lockFolder(dir)
	if err != nil {
		return err
	}
	defer lock.release()
	cfg := config.Default()
	if c.Bool("randomports") {
		apiPort, err := freePort()
		if err != nil {
			return err
		}
		swarmPort, err := freePort()
		if err != nil {
			return err
		}
		cfg.API.RestAPI.HTTPListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(apiPort)}
		cfg.Cluster.ListenMultiaddress = config.StringList{"/ip4/0.0.0.0/tcp/" + strconv.Itoa(swarmPort)}
	}
	if err := cfg.ApplyEnv(c.Getenv); err != nil {
		return err
	}
	if secret != "" {
		cfg.Cluster.Secret = secret
	}
	if cfg.Cluster.Secret == "" {
		if cfg.Cluster.Secret, err = config.NewSecret(); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if len(peers) > 0 {
		path := cfg.Cluster.PeerstoreFile
		if path == "" {
			path = p2p.PeerstoreFile
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if err := p2p.WritePeerFile(path, peers); err != nil {
			return err
		}
		cfg.Consensus.CRDT.TrustedPeers = []string{}
		for _, ai := range peers {
			if id := ai.ID.String(); !slices.Contains(cfg.Consensus.CRDT.TrustedPeers, id) {
				cfg.Consensus.CRDT.TrustedPeers = append(cfg.Consensus.CRDT.TrustedPeers, id)
			}
		}
		fmt.Fprintf(c.Stdout, "peerstore written to %s\n", path)
	}
	if err := cfg.Save(dir); err != nil {
		return err
	}
	ident, err := config.LoadIdentity(dir, func(string) string { return "" })
	if err != nil {
		if ident, err = config.NewIdentity(); err != nil {
			return err
		}
		if err := ident.Save(dir); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.Stdout, "configuration written to %s\npeer ID: %s\n", dir, ident.ID)
	return nil
}

// freePort asks the kernel for a free TCP port on loopback.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
