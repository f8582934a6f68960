package consumer

import (
	"maps"
	"slices"
)

// MergeHeaders returns base with every key of over replaced by over's
// value: the headers a message carries after a Requeue outcome. Neither
// map is modified. When over is empty base itself is returned; otherwise a
// new map that shares base's value slices (header values are read-only
// once handed out) and holds copies of over's.
func MergeHeaders(base, over map[string][]string) map[string][]string {
	if len(over) == 0 {
		return base
	}
	out := make(map[string][]string, len(base)+len(over))
	maps.Copy(out, base)
	for k, v := range over {
		out[k] = slices.Clone(v)
	}
	return out
}
