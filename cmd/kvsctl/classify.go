package main

// classify maps library errors to exit codes. The kvs client commands extend
// it with not found, precondition failed and rejected.
func classify(err error) int {
	return exitFailure
}
