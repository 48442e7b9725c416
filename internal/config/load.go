// Package config reads and writes service.json and identity.json with the
// reference's section and key names, so a configuration written for IPFS
// Cluster 1.1.x configures this peer the same way.
//
// Every section is a plain struct whose json tags are the key names. One
// reflective loader serves all of them: it decodes key by key so that an
// invalid value names its key, warns about unknown keys instead of failing,
// and applies CLUSTER_<COMPONENT>_<KEY> environment overrides.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes "2m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("expected a duration string such as \"30s\"")
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// parseDuration reads a configured duration; none may be negative.
func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q cannot be negative", s)
	}
	return v, nil
}

// ErrInvalid is wrapped by every configuration error callers report.
var ErrInvalid = errors.New("invalid configuration")

// unusedReferenceKeys are keys of the reference's sections that this
// version reads nothing from, with the reason, so that an operator moving
// a configuration over learns why rather than only that.
var unusedReferenceKeys = map[string]string{
	"cluster.leave_on_shutdown":                         "only raft consensus uses it",
	"cluster.peer_watch_interval":                       "only raft consensus uses it",
	"cluster.mdns_interval":                             "there is no mDNS discovery; peers are found through peer_addresses, the peerstore file and --bootstrap",
	"ipfs_connector.ipfshttp.informer_trigger_interval": "metrics are sent on their own intervals",
}

// decodeSection fills section (a pointer to struct) from raw JSON, key by
// key. Unknown keys are returned as warnings with their full path.
func decodeSection(path string, raw json.RawMessage, section any) (warnings []string, err error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%w: %s: expected a JSON object: %v", ErrInvalid, path, err)
	}
	fields := fieldsByKey(section)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			if why, known := unusedReferenceKeys[path+"."+k]; known {
				warnings = append(warnings, fmt.Sprintf("key %s.%s ignored: %s", path, k, why))
			} else {
				warnings = append(warnings, fmt.Sprintf("unknown key %s.%s ignored", path, k))
			}
			continue
		}
		// A nested section (crdt's batching) is decoded key by key
		// too, so that an error names the inner key, not the whole
		// object, and its unknown keys are warned about.
		if _, custom := f.Addr().Interface().(json.Unmarshaler); f.Kind() == reflect.Struct && !custom {
			inner, err := decodeSection(path+"."+k, obj[k], f.Addr().Interface())
			warnings = append(warnings, inner...)
			if err != nil {
				return warnings, err
			}
			continue
		}
		if err := json.Unmarshal(obj[k], f.Addr().Interface()); err != nil {
			return warnings, fmt.Errorf("%w: %s.%s: invalid value %s: %v", ErrInvalid, path, k, clip(obj[k]), unwrapJSON(err))
		}
	}
	return warnings, nil
}

// applyEnv overrides fields of section from CLUSTER_<PREFIX>_<KEY>, where
// KEY is the json key upper-cased without underscores (as the reference's
// envconfig names its Go fields: node_multiaddress → NODEMULTIADDRESS).
func applyEnv(path, prefix string, section any, getenv func(string) string) error {
	for key, f := range fieldsByKey(section) {
		name := prefix + strings.ToUpper(strings.ReplaceAll(key, "_", ""))
		// Values often come from $(cat file) or a secrets file, with
		// a trailing newline no setting can mean.
		val := strings.TrimSpace(getenv(name))
		if val == "" {
			continue
		}
		if err := setFromString(f, val); err != nil {
			return fmt.Errorf("%w: %s (from $%s): invalid value %q: %v", ErrInvalid, path+"."+key, name, val, err)
		}
	}
	return nil
}

func fieldsByKey(section any) map[string]reflect.Value {
	v := reflect.ValueOf(section).Elem()
	t := v.Type()
	out := make(map[string]reflect.Value, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = v.Field(i)
	}
	return out
}

// setFromString parses an environment value into a field: strings as they
// are, numbers, booleans and durations parsed, lists comma-separated, and
// anything else as JSON.
func setFromString(f reflect.Value, s string) error {
	switch f.Interface().(type) {
	case Duration:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(Duration(d)))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not a boolean")
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errors.New("not a non-negative integer")
		}
		f.SetUint(n)
	case reflect.Slice:
		if f.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(s), "[") {
			parts := strings.Split(s, ",")
			sl := reflect.MakeSlice(f.Type(), 0, len(parts))
			for _, p := range parts {
				if p = strings.TrimSpace(p); p != "" {
					sl = reflect.Append(sl, reflect.ValueOf(p).Convert(f.Type().Elem()))
				}
			}
			f.Set(sl)
			return nil
		}
		return json.Unmarshal([]byte(s), f.Addr().Interface())
	case reflect.Map:
		if f.Type().Key().Kind() == reflect.String && f.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(s), "{") {
			m, err := parsePairs(s)
			if err != nil {
				return err
			}
			mv := reflect.MakeMapWithSize(f.Type(), len(m))
			for k, v := range m {
				mv.SetMapIndex(reflect.ValueOf(k).Convert(f.Type().Key()), reflect.ValueOf(v).Convert(f.Type().Elem()))
			}
			f.Set(mv)
			return nil
		}
		return json.Unmarshal([]byte(s), f.Addr().Interface())
	default:
		return json.Unmarshal([]byte(s), f.Addr().Interface())
	}
	return nil
}

// parsePairs reads "key:value,key2:value2", the reference's format for a
// map in an environment variable (a value may hold ':'; none may hold ',').
func parsePairs(s string) (map[string]string, error) {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, ":")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return nil, fmt.Errorf("%q is not key:value (want key:value pairs separated by commas, or a JSON object)", pair)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

func clip(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// unwrapJSON turns encoding/json's type errors into plain words.
func unwrapJSON(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("expected %s, got %s", te.Type, te.Value)
	}
	return err
}
