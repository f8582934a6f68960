package jobs

import (
	"fmt"
	"strings"

	"github.com/pipevisor/pipevisor/consumer"
)

// UnknownPipelineError is the error for names that are not pipelines of
// the manager: it names them and the pipelines that exist, so a typo is
// seen at once. It wraps consumer.ErrUnknownPipeline.
type UnknownPipelineError struct {
	// Names are the unknown names, in the order asked.
	Names []string
	// Known are the pipelines that existed when asked, sorted.
	Known []string
}

// Error reads `unknown pipeline "ordrs" (pipelines: emails, orders)`.
func (e *UnknownPipelineError) Error() string {
	var b strings.Builder
	b.WriteString("unknown pipeline")
	if len(e.Names) > 1 {
		b.WriteString("s")
	}
	for i, n := range e.Names {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %q", n)
	}
	if len(e.Known) == 0 {
		b.WriteString(" (there are no pipelines)")
	} else {
		b.WriteString(" (pipelines: " + strings.Join(e.Known, ", ") + ")")
	}
	return b.String()
}

// Unwrap returns consumer.ErrUnknownPipeline.
func (e *UnknownPipelineError) Unwrap() error { return consumer.ErrUnknownPipeline }
