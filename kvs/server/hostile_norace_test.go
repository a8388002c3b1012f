//go:build !race

package server

// raceEnabled is set when the tests run under the race detector, which
// limits a process to 8128 live goroutines and slows everything down.
const raceEnabled = false
