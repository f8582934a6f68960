package boltjobs

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/consumer"
)

// Default values applied by Config.Defaults (RoadRunner's).
const (
	// DefaultPriority is the pipeline priority when none is configured.
	DefaultPriority int64 = 10
	// DefaultPrefetch caps the jobs handed out and unsettled at once.
	DefaultPrefetch = 1000
	// DefaultFile is the database file when none is configured, relative
	// to the supervisor's working directory.
	DefaultFile = "rr.db"
	// DefaultPermissions is the mode of a database file the driver creates.
	DefaultPermissions Permissions = 0o755
)

// Permissions is a file mode written in octal digits, as RoadRunner reads
// it: 0644, 0o644 and 644 all mean rw-r--r-- (a YAML integer or string).
// A number with a digit 8 or 9 and no leading 0 that is at most 511 is
// the mode in decimal: PHP's BoltdbCreateInfo sends its default 0755 as
// "493" to jobs.Declare. Zero means "not set".
type Permissions uint32

// UnmarshalYAML reads the scalar as ParsePermissions does.
func (p *Permissions) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected octal digits such as 0644, got a %s", kindName(n.Kind))
	}
	v, err := ParsePermissions(n.Value)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParsePermissions parses octal digits ("0644", "0o644", "644"), or a
// mode in decimal that can not be octal ("493", see Permissions).
func ParsePermissions(s string) (Permissions, error) {
	t := strings.TrimSpace(s)
	o := strings.TrimPrefix(strings.TrimPrefix(t, "0o"), "0O")
	if v, err := strconv.ParseUint(o, 8, 32); err == nil && v <= 0o777 {
		return Permissions(v), nil
	}
	if !strings.HasPrefix(t, "0") {
		if v, err := strconv.ParseUint(t, 10, 32); err == nil && v <= 0o777 {
			return Permissions(v), nil
		}
	}
	return 0, fmt.Errorf("%q is not a file mode: want octal digits from 0 to 0777, such as 0644", s)
}

// Mode returns p as a file mode.
func (p Permissions) Mode() fs.FileMode { return fs.FileMode(p) }

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	}
	return "value"
}

// Config holds the pipeline keys of a boltdb pipeline
// (jobs.pipelines.<name>.config), RoadRunner's keys.
type Config struct {
	// Priority is the pipeline priority. Jobs published with priority 0
	// inherit it. Lower numbers are more urgent.
	Priority int64 `yaml:"priority"`
	// Prefetch caps how many jobs may be handed out and unsettled at once.
	Prefetch int `yaml:"prefetch"`
	// File is the database file, relative to the working directory when
	// not absolute. Pipelines naming the same file share it (each keeps
	// its own buckets). Missing directories are created.
	File string `yaml:"file"`
	// Permissions is the mode of the file when the driver creates it;
	// zero takes the boltdb: section's, else DefaultPermissions.
	Permissions Permissions `yaml:"permissions"`
}

// Defaults fills in zero fields with their default values; Permissions
// stays zero (see Global.Apply).
func (c *Config) Defaults() {
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.File == "" {
		c.File = DefaultFile
	}
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join. Call Defaults first: zero values are reported as invalid.
func (c *Config) Validate() error {
	var errs []error
	if c.Priority <= 0 {
		errs = append(errs, &consumer.FieldError{Key: "priority", Reason: fmt.Sprintf("must be positive, got %d", c.Priority)})
	}
	if c.Prefetch <= 0 {
		errs = append(errs, &consumer.FieldError{Key: "prefetch", Reason: fmt.Sprintf("must be positive, got %d", c.Prefetch)})
	}
	if strings.TrimSpace(c.File) == "" {
		errs = append(errs, &consumer.FieldError{Key: "file", Reason: "must name a file"})
	}
	return errors.Join(errs...)
}

// Global is the top-level boltdb: section. Only permissions concerns jobs;
// file and interval are the keys of RoadRunner's boltdb kv storage, which
// Pipevisor does not run: they are accepted and ignored.
type Global struct {
	// Permissions is the default mode of the database files (every
	// pipeline's permissions key overrides it).
	Permissions Permissions `yaml:"permissions"`
	// File is RoadRunner's kv file; ignored.
	File string `yaml:"file"`
	// Interval is RoadRunner's kv TTL check interval; ignored.
	Interval int `yaml:"interval"`
}

// Mode returns the file mode for a pipeline with config c under the
// section g (nil when the file has no boltdb: section).
func (c Config) Mode(g *Global) fs.FileMode {
	switch {
	case c.Permissions != 0:
		return c.Permissions.Mode()
	case g != nil && g.Permissions != 0:
		return g.Permissions.Mode()
	}
	return DefaultPermissions.Mode()
}
