package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestParseLevels(t *testing.T) {
	l, err := ParseLevels("warn,pintracker:debug, restapi:error")
	if err != nil {
		t.Fatal(err)
	}
	if l.Level("cluster") != zerolog.WarnLevel || l.Level("pintracker") != zerolog.DebugLevel || l.Level("restapi") != zerolog.ErrorLevel {
		t.Fatalf("levels: %+v", l)
	}
	for _, bad := range []string{"loud", "pintracker:", "a:b:c"} {
		if _, err := ParseLevels(bad); err == nil || !strings.Contains(err.Error(), "invalid log level") {
			t.Errorf("%q: want an error, got %v", bad, err)
		}
	}
}

func TestComponentFieldAndLevel(t *testing.T) {
	var buf bytes.Buffer
	Setup(&buf, Levels{Default: zerolog.InfoLevel, Components: map[string]zerolog.Level{"quiet": zerolog.ErrorLevel}})
	loud, quiet := For("loud"), For("quiet")
	loud.Info().Msg("shown")
	quiet.Info().Msg("hidden")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %q", buf.String())
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
		t.Fatal(err)
	}
	if entry["component"] != "loud" || entry["message"] != "shown" || entry["time"] == nil {
		t.Fatalf("entry: %v", entry)
	}
}
