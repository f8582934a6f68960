// Package jobsv1 holds the generated protobuf types of the RPC API: the
// RoadRunner-compatible jobs.v1 messages (jobs.proto) and the informer and
// resetter messages (workers.proto).
package jobsv1

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative jobs.proto workers.proto
