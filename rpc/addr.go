package rpc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// ParseAddr splits an RPC address into a network ("tcp" or "unix") and an
// address for net.Dial/net.Listen. It accepts tcp://host:port and
// unix://path (RoadRunner's rpc.listen syntax); anything else wraps
// ErrBadAddress.
func ParseAddr(addr string) (network, address string, err error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("%w: %q", ErrBadAddress, addr)
	}
	switch scheme {
	case "tcp":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%w: %q: %w", ErrBadAddress, addr, err)
		}
		return "tcp", rest, nil
	case "unix":
		return "unix", rest, nil
	default:
		return "", "", fmt.Errorf("%w: %q: unknown scheme %q", ErrBadAddress, addr, scheme)
	}
}

// Listen opens the listener for addr (see ParseAddr).
//
// For unix://path the socket file is created with mode 0600 (it is bound
// under a temporary name, chmod-ed, then renamed into place, so it is never
// reachable with a wider mode). A stale socket file at path (nothing
// accepts on it) is removed first; a live one, or a path that is not a
// socket, gives ErrAddressInUse. Closing the returned listener removes the
// socket file if it is still the one Listen created.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", address)
		if err != nil {
			return nil, fmt.Errorf("rpc: listen %s: %w", addr, err)
		}
		return ln, nil
	}
	return listenUnix(ctx, addr, address)
}

func listenUnix(ctx context.Context, addr, path string) (net.Listener, error) {
	if err := removeStaleSocket(ctx, addr, path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), ".pipevisor-"+uuid.NewString()[:8]+".sock")
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("rpc: listen %s: %w", addr, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		_ = ul.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("rpc: listen %s: %w", addr, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &unixListener{UnixListener: ul, path: path, info: info}, nil
}

// removeStaleSocket removes path when it is a unix socket nobody accepts
// on. It returns ErrAddressInUse when a server answers there or when path
// is something other than a socket.
func removeStaleSocket(ctx context.Context, addr, path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rpc: listen %s: %w", addr, err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: %s exists and is not a socket", ErrAddressInUse, path)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", path)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("%w: another process serves %s", ErrAddressInUse, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("rpc: listen %s: probing existing socket: %w", addr, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rpc: listen %s: removing stale socket: %w", addr, err)
	}
	return nil
}

// unixListener removes its socket file on Close, unless the file was
// replaced by someone else in the meantime.
type unixListener struct {
	*net.UnixListener
	path string
	info os.FileInfo
}

// Addr reports the final socket path (the socket was bound under a
// temporary name).
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if cur, statErr := os.Lstat(l.path); statErr == nil && os.SameFile(cur, l.info) {
		if rmErr := os.Remove(l.path); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return err
}
