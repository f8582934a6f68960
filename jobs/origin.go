package jobs

import "context"

// Origin says who asked for a control-plane action (pause, resume,
// declare, destroy, reset), for the info line the action is logged with.
type Origin struct {
	// Source is "rpc", "signal" or "startup"; empty means unknown.
	Source string
	// Remote is the peer's address for "rpc" (empty when the peer has
	// none, as a unix socket client).
	Remote string
}

// originKey is the context key of an Origin.
type originKey struct{}

// WithOrigin returns ctx carrying o; the Manager's actions called with it
// log o.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginOf returns the Origin ctx carries, or Origin{Source: "internal"}.
func OriginOf(ctx context.Context) Origin {
	if o, ok := ctx.Value(originKey{}).(Origin); ok && o.Source != "" {
		return o
	}
	return Origin{Source: "internal"}
}

// LogAttrs returns o as slog key/value pairs: origin, and remote when set.
func (o Origin) LogAttrs() []any {
	if o.Remote == "" {
		return []any{"origin", o.Source}
	}
	return []any{"origin", o.Source, "remote", o.Remote}
}
