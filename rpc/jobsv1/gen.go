// Package jobsv1 holds the generated protobuf types of the RPC API: the
// RoadRunner-compatible jobs.v1 messages (jobs.proto) and the informer and
// resetter messages (workers.proto). See package rpc for the wire format.
//
// Regenerate with protoc and protoc-gen-go v1.36.12 (the version of
// google.golang.org/protobuf in go.mod) on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go generate ./rpc/jobsv1
package jobsv1

//go:generate protoc --proto_path=../.. --go_out=../.. --go_opt=module=github.com/pipevisor/pipevisor rpc/jobsv1/jobs.proto rpc/jobsv1/workers.proto
