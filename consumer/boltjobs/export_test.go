package boltjobs

import bolt "go.etcd.io/bbolt"

// CrashCopy writes to path q's file as a crash of the machine at this
// moment leaves it: every commit done so far, nothing after.
func CrashCopy(q *Queue, path string) error {
	return q.s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) })
}
