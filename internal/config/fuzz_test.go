package config

import (
	"testing"
)

// FuzzParse feeds arbitrary bytes to the service.json loader: it must
// return a config or an error, never panic, and whatever it accepts must
// validate and survive a write and a second load.
func FuzzParse(f *testing.F) {
	def, _ := Default().Marshal()
	f.Add(def)
	f.Add([]byte(`{"cluster":{"peername":"x","replication_factor_min":2,"replication_factor_max":3}}`))
	f.Add([]byte(`{"api":{"restapi":{"http_listen_multiaddress":["/ip4/127.0.0.1/tcp/1","/ip4/127.0.0.1/tcp/2"],"headers":{"A":["b"]}}}}`))
	f.Add([]byte(`{"informer":{"tags":{"tags":{"group":"a"}}},"allocator":{"balanced":{"allocate_by":["freespace"]}}}`))
	f.Add([]byte(`{"pin_tracker":{"stateless":{"concurrent_pins":"x"}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"cluster":`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, func(string) string { return "" })
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		if _, err := Parse(out, func(string) string { return "" }); err != nil {
			t.Fatalf("our own output does not load: %v\n%s", err, out)
		}
	})
}
