package tracing

import (
	"maps"
	"slices"
	"strings"
)

// Header names of the W3C trace context a job carries.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// headerCarrier adapts job headers to propagation.TextMapCarrier. Get
// matches keys case-insensitively (producers may write Traceparent); Set
// replaces any spelling of the key by the lower-case one.
type headerCarrier map[string][]string

func (h headerCarrier) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (h headerCarrier) Set(key, value string) {
	for k := range h {
		if k != key && strings.EqualFold(k, key) {
			delete(h, k)
		}
	}
	h[key] = []string{value}
}

func (h headerCarrier) Keys() []string {
	return slices.Collect(maps.Keys(h))
}

// cloneHeaders returns a copy of h that can take more keys.
func cloneHeaders(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h)+2)
	maps.Copy(out, h)
	return out
}
