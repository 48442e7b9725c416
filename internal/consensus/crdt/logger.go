package crdt

import (
	"fmt"

	"github.com/rs/zerolog"
)

// crdtLogger gives go-ds-crdt's messages to zerolog. Its informational
// messages (one per 50 merged deltas, repair progress) are debug output for
// us.
type crdtLogger struct{ log zerolog.Logger }

func (l crdtLogger) Debug(args ...any)                 { l.log.Debug().Msg(fmt.Sprint(args...)) }
func (l crdtLogger) Debugf(format string, args ...any) { l.log.Debug().Msgf(format, args...) }
func (l crdtLogger) Info(args ...any)                  { l.log.Debug().Msg(fmt.Sprint(args...)) }
func (l crdtLogger) Infof(format string, args ...any)  { l.log.Debug().Msgf(format, args...) }
func (l crdtLogger) Warn(args ...any)                  { l.log.Warn().Msg(fmt.Sprint(args...)) }
func (l crdtLogger) Warnf(format string, args ...any)  { l.log.Warn().Msgf(format, args...) }
func (l crdtLogger) Error(args ...any)                 { l.log.Error().Msg(fmt.Sprint(args...)) }
func (l crdtLogger) Errorf(format string, args ...any) { l.log.Error().Msgf(format, args...) }

// Fatal and Panic are part of the interface; go-ds-crdt does not call them.
func (l crdtLogger) Fatal(args ...any)                 { l.log.Fatal().Msg(fmt.Sprint(args...)) }
func (l crdtLogger) Fatalf(format string, args ...any) { l.log.Fatal().Msgf(format, args...) }
func (l crdtLogger) Panic(args ...any)                 { l.log.Panic().Msg(fmt.Sprint(args...)) }
func (l crdtLogger) Panicf(format string, args ...any) { l.log.Panic().Msgf(format, args...) }
