// Package testscripts holds the CLI tests: each .txtar file in this folder is
// a script run against the real binary's command tree (the test binary
// re-executes itself as ipfs-cluster, ipfs-cluster-ctl and
// ipfs-cluster-service) with real kubo daemons.
package testscripts

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/rogpeppe/go-internal/testscript"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cli"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/kubo"
)

func TestMain(m *testing.M) {
	tool := func(name string) func() {
		return func() { cli.Main(cli.ForProgram(name), os.Args[1:]) }
	}
	testscript.Main(m, map[string]func(){
		"ipfs-cluster":         tool("ipfs-cluster"),
		"ipfs-cluster-ctl":     tool("ipfs-cluster-ctl"),
		"ipfs-cluster-service": tool("ipfs-cluster-service"),
		"ipfs-cluster-follow":  tool("ipfs-cluster-follow"),
	})
}

func TestScripts(t *testing.T) {
	kuboBin, err := kubo.Binary()
	if err != nil {
		t.Fatal(err)
	}
	refBin := filepath.Join(filepath.Dir(kuboBin), "ref")
	testscript.Run(t, testscript.Params{
		Dir: ".",
		// The library removes its own root only once every script ran,
		// which a -run that picks some of them never lets happen.
		WorkdirRoot: t.TempDir(),
		Setup: func(env *testscript.Env) error {
			env.Setenv(kubo.BinEnv, kuboBin)
			env.Setenv("REFBIN", refBin)
			env.Setenv("HOME", env.WorkDir)
			env.Values["kubos"] = daemons{}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"kubo":            cmdKubo,
			"wait-api":        cmdWaitAPI,
			"wait-socket":     cmdWaitSocket,
			"wait-status":     cmdWaitStatus,
			"free-port":       cmdFreePort,
			"peer-id":         cmdPeerID,
			"serve":           cmdServe,
			"follow-template": cmdFollowTemplate,
		},
	})
}

// daemons keeps each script's kubo daemons by name.
type daemons map[string]*kubo.Daemon

func kubos(ts *testscript.TestScript) daemons { return ts.Value("kubos").(daemons) }

// cmdKubo drives a kubo daemon from a script:
//
//	kubo start NAME          start one; sets $NAME_API (multiaddr) and $NAME_URL
//	kubo stop|restart NAME
//	kubo add NAME VAR FILE   add FILE unpinned; set $VAR to its CID
//	kubo run NAME ARGS...    run the ipfs CLI against it (output on stdout)
//	[!] kubo pinned NAME TYPE CID   assert kubo holds CID with a pin of TYPE
func cmdKubo(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: kubo start|stop|restart|add|run|pinned NAME ...")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	op, name := args[0], args[1]
	all := kubos(ts)
	if op == "start" {
		d, err := kubo.Start(ctx, kubo.Options{RepoDir: ts.MkAbs(name + "-repo")})
		ts.Check(err)
		all[name] = d
		ts.Defer(func() { d.Stop() })
		ts.Setenv(name+"_API", d.APIAddr)
		ts.Setenv(name+"_URL", d.APIURL)
		return
	}
	d := all[name]
	if d == nil {
		ts.Fatalf("no kubo named %s", name)
	}
	switch op {
	case "stop":
		ts.Check(d.Terminate())
	case "restart":
		ts.Check(d.Restart(ctx))
	case "add":
		if len(args) != 4 {
			ts.Fatalf("usage: kubo add NAME VAR FILE")
		}
		out, err := d.Run(ctx, "add", "-Q", "--pin=false", ts.MkAbs(args[3]))
		ts.Check(err)
		ts.Setenv(args[2], strings.TrimSpace(out))
	case "run":
		out, err := d.Run(ctx, args[2:]...)
		ts.Check(err)
		fmt.Fprint(ts.Stdout(), out)
	case "pinned":
		if len(args) != 4 {
			ts.Fatalf("usage: kubo pinned NAME TYPE CID")
		}
		out, err := d.Run(ctx, "pin", "ls", "--type="+args[2], "-q")
		ts.Check(err)
		held := false
		for _, c := range strings.Fields(out) {
			held = held || c == args[3]
		}
		if held == neg {
			ts.Fatalf("kubo %s holds %s as %s: %v, want %v", name, args[3], args[2], held, !neg)
		}
	default:
		ts.Fatalf("unknown kubo operation %q", op)
	}
}

// cmdWaitAPI waits until the REST API of the peer configured in DIR
// answers, and sets $API to its multiaddress.
//
//	wait-api DIR
func cmdWaitAPI(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: wait-api DIR")
	}
	cfg, err := config.Load(ts.MkAbs(args[0]), func(string) string { return "" })
	ts.Check(err)
	addr, err := ma.NewMultiaddr(cfg.API.RestAPI.HTTPListenMultiaddress[0])
	ts.Check(err)
	port, err := addr.ValueForProtocol(ma.P_TCP)
	ts.Check(err)
	waitHealth(ts, "/ip4/127.0.0.1/tcp/"+port)
}

// cmdWaitStatus polls the status of CID through $API until this peer
// reports STATUS (30s at most).
//
//	wait-status CID STATUS
func cmdWaitStatus(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: wait-status CID STATUS")
	}
	addr := ts.Getenv("API")
	if addr == "" {
		ts.Fatalf("wait-status needs wait-api or wait-socket first")
	}
	ci, err := api.DecodeCid(args[0])
	ts.Check(err)
	cl, err := client.New(client.Config{Hosts: []string{addr}, Timeout: 5 * time.Second})
	ts.Check(err)
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		gpi, err := cl.Status(context.Background(), ci, true)
		if err != nil {
			last = err.Error()
		}
		for _, pi := range gpi.PeerMap {
			last = pi.Status.String()
			if last == args[1] {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("%s: status %q after 30s, want %s", args[0], last, args[1])
}

// cmdWaitSocket waits until a REST API answers on the unix socket PATH,
// and sets $API to its multiaddress.
//
//	wait-socket PATH
func cmdWaitSocket(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: wait-socket PATH")
	}
	waitHealth(ts, "/unix"+ts.MkAbs(args[0]))
}

// waitHealth waits up to 30 s until GET /health answers at the REST API
// multiaddress addr, and sets $API to it.
func waitHealth(ts *testscript.TestScript, addr string) {
	cl, err := client.New(client.Config{Hosts: []string{addr}, Timeout: 2 * time.Second})
	ts.Check(err)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cl.Health(context.Background()) == nil {
			ts.Setenv("API", addr)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("no REST API at %s after 30s", addr)
}

// cmdServe serves the files of DIR over HTTP on 127.0.0.1 until the script
// ends, and sets $SERVE_URL.
//
//	serve DIR
func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: serve DIR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	srv := &http.Server{Handler: http.FileServer(http.Dir(ts.MkAbs(args[0]))), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	ts.Defer(func() { srv.Close() })
	ts.Setenv("SERVE_URL", "http://"+l.Addr().String())
}

// cmdFollowTemplate writes to OUT the template a follower of the peer
// configured in DIR loads: that peer's configuration, with it as the one
// trusted peer and the peer to join, and a free libp2p port on loopback
// for the follower.
//
//	follow-template DIR OUT
func cmdFollowTemplate(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: follow-template DIR OUT")
	}
	none := func(string) string { return "" }
	cfg, err := config.Load(ts.MkAbs(args[0]), none)
	ts.Check(err)
	ident, err := config.LoadIdentity(ts.MkAbs(args[0]), none)
	ts.Check(err)
	listen, err := ma.NewMultiaddr(cfg.Cluster.ListenMultiaddress[0])
	ts.Check(err)
	port, err := listen.ValueForProtocol(ma.P_TCP)
	ts.Check(err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	free := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg.Consensus.CRDT.TrustedPeers = []string{ident.ID.String()}
	cfg.Cluster.PeerAddresses = []string{"/ip4/127.0.0.1/tcp/" + port + "/p2p/" + ident.ID.String()}
	cfg.Cluster.ListenMultiaddress = config.StringList{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(free)}
	b, err := cfg.Marshal()
	ts.Check(err)
	ts.Check(os.MkdirAll(filepath.Dir(ts.MkAbs(args[1])), 0o755))
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o644))
}

// cmdFreePort sets each VAR to a TCP port free on 127.0.0.1, for
// addresses a script must know before the daemon starts (such as a
// --bootstrap address).
//
//	free-port VAR...
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 || neg {
		ts.Fatalf("usage: free-port VAR...")
	}
	// All listeners stay open until every port is chosen, so the ports
	// differ.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, name := range args {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		ls = append(ls, l)
		ts.Setenv(name, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
}

// cmdPeerID sets VAR to the peer ID in DIR/identity.json.
//
//	peer-id DIR VAR
func cmdPeerID(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: peer-id DIR VAR")
	}
	ident, err := config.LoadIdentity(ts.MkAbs(args[0]), func(string) string { return "" })
	ts.Check(err)
	ts.Setenv(args[1], ident.ID.String())
}
