// Package policies holds the example Lua policies shipped with the project.
//
// Each *.lua file here is a complete, documented policy an operator can copy
// next to service.json and name in cluster.policy_file:
//
//   - regions.lua: spread copies across regions, a minimum per region;
//   - tiers.lua: replication factors from the "tier" metadata;
//   - admission.lua: name prefixes, required metadata, size and quota;
//   - busy.lua: keep allocations away from peers with a long pin queue;
//   - retry.lua: exponential back-off and terminal failure.
//
// policies_test.go loads every one through internal/policy, in the same
// sandbox as the daemon, and checks its decisions.
package policies

import "embed"

// FS holds the example policies.
//
//go:embed *.lua
var FS embed.FS
