// Package logging builds the zerolog loggers of every component: one
// structured stream with a component field, and a level per component set
// from a spec such as "info,pintracker:debug,restapi:warn".
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Levels maps component names to levels; Default applies to the rest.
type Levels struct {
	Default    zerolog.Level
	Components map[string]zerolog.Level
}

// ParseLevels parses "info,cluster:debug,pintracker:debug". A bare level sets
// the default; "component:level" sets one component.
func ParseLevels(spec string) (Levels, error) {
	l := Levels{Default: zerolog.InfoLevel, Components: map[string]zerolog.Level{}}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		comp, lvl, found := strings.Cut(part, ":")
		if !found {
			comp, lvl = "", part
		}
		level, err := zerolog.ParseLevel(strings.ToLower(lvl))
		if err != nil || lvl == "" {
			return Levels{}, fmt.Errorf("invalid log level %q in %q: want debug, info, warn, error", lvl, spec)
		}
		if comp == "" {
			l.Default = level
		} else {
			l.Components[comp] = level
		}
	}
	return l, nil
}

// Level returns the level of one component.
func (l Levels) Level(component string) zerolog.Level {
	if lvl, ok := l.Components[component]; ok {
		return lvl
	}
	return l.Default
}

var (
	mu     sync.RWMutex
	out    io.Writer = os.Stderr
	levels           = Levels{Default: zerolog.InfoLevel}
)

func init() {
	zerolog.TimeFieldFormat = time.RFC3339Nano
}

// Setup sets where logs go and the levels of the loggers made afterwards.
// A terminal gets human-readable lines; anything else gets JSON lines.
func Setup(w io.Writer, l Levels) {
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		w = zerolog.ConsoleWriter{Out: f, TimeFormat: "15:04:05.000"}
	}
	mu.Lock()
	out, levels = w, l
	mu.Unlock()
}

// For returns the logger of a component.
func For(component string) zerolog.Logger {
	mu.RLock()
	defer mu.RUnlock()
	return zerolog.New(out).Level(levels.Level(component)).With().Timestamp().Str("component", component).Logger()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
