// Package notify speaks the systemd service-manager protocol (sd_notify):
// READY=1 once the supervisor is up, STOPPING=1 when it begins to shut
// down, and WATCHDOG=1 keep-alives while the main loop is healthy.
//
// Messages go through github.com/coreos/go-systemd/v22/daemon, which sends
// them to the unix datagram socket named by NOTIFY_SOCKET. When the process
// was not started by systemd with Type=notify (NOTIFY_SOCKET unset) every
// method is a no-op that returns nil. The environment is read on every
// call and never modified.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// ErrBadWatchdog is returned by Watchdog when WATCHDOG_USEC is set but not a
// positive number of microseconds.
var ErrBadWatchdog = errors.New("notify: invalid WATCHDOG_USEC")

// Notifier sends state changes to the service manager. Its methods are
// safe for concurrent use.
type Notifier struct {
	log *slog.Logger
}

// New returns a Notifier. log receives a warning whenever the watchdog
// stops or resumes pinging (nil discards them).
func New(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{log: log}
}

// Ready tells the service manager that start-up is complete (READY=1).
// Send it once every consumed pipeline runs and the pool has its workers.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Stopping tells the service manager that shutdown has begun (STOPPING=1),
// so it waits for TimeoutStopSec instead of treating the exit as a crash.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// send delivers one state string; no-op without NOTIFY_SOCKET.
func (n *Notifier) send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("notify: sending %s: %w", state, err)
	}
	return nil
}

// Interval returns the watchdog interval systemd asked for (WatchdogSec, as
// WATCHDOG_USEC for this process), or 0 when the watchdog is off: no
// WATCHDOG_USEC, or WATCHDOG_PID names another process.
func Interval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadWatchdog, err)
	}
	return d, nil
}

// Watchdog sends WATCHDOG=1 every half watchdog interval for as long as
// healthy returns nil, and blocks until ctx is done (then it returns nil).
// While healthy returns an error no ping is sent, so systemd restarts a
// supervisor whose main loop is stuck or broken once WatchdogSec passes;
// the transition is logged once each way. healthy is called from this
// goroutine only, once per half interval, and must not block for long.
//
// When the watchdog is off (see Interval) Watchdog returns nil at once; it
// returns an error wrapping ErrBadWatchdog when WATCHDOG_USEC is invalid.
// The caller owns the goroutine that runs Watchdog and waits for it.
func (n *Notifier) Watchdog(ctx context.Context, healthy func() error) error {
	interval, err := Interval()
	if err != nil || interval <= 0 {
		return err
	}
	period := interval / 2
	t := time.NewTicker(period)
	defer t.Stop()
	failing := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := healthy(); err != nil {
			if !failing {
				n.log.Warn("watchdog: not healthy, withholding WATCHDOG=1", "err", err, "watchdog", interval)
				failing = true
			}
		} else {
			if failing {
				n.log.Warn("watchdog: healthy again, pinging")
				failing = false
			}
			if err := n.send(daemon.SdNotifyWatchdog); err != nil {
				n.log.Warn("watchdog: ping failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
