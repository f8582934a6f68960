package config

import "testing"

// What RoadRunner's PHP BoltdbCreateInfo sends (its default permissions
// 0755 is the PHP integer 493), and a declare writing the mode in octal.
func TestPipelineFromDeclareBoltDB(t *testing.T) {
	p, err := PipelineFromDeclare(map[string]string{
		"name": "local-db", "driver": "boltdb", "priority": "2", "prefetch": "10000", "file": "rr.db", "permissions": "493",
	})
	if err != nil {
		t.Fatalf("PipelineFromDeclare: %v", err)
	}
	b := p.BoltDB
	if p.Driver != DriverBoltDB || p.Priority != 2 || b == nil || b.File != "rr.db" || b.Prefetch != 10000 || b.Mode(nil) != 0o755 {
		t.Errorf("pipeline %+v, boltdb %+v", p, b)
	}
	p, err = PipelineFromDeclare(map[string]string{"name": "x", "driver": "boltdb", "file": "data/x.db", "permissions": "0600"})
	if err != nil || p.BoltDB.Mode(nil) != 0o600 || p.BoltDB.Prefetch != 1000 || p.Priority != 10 {
		t.Errorf("PipelineFromDeclare = %+v, %v", p.BoltDB, err)
	}
	if _, err := PipelineFromDeclare(map[string]string{"name": "x", "driver": "boltdb", "permissions": "0999"}); err == nil ||
		err.Error() != `permissions: "0999" is not a file mode: want octal digits from 0 to 0777, such as 0644` {
		t.Errorf("bad permissions: %v", err)
	}
}
