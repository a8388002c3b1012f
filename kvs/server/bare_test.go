package server

import "testing"

func TestBareBodyIs100Bytes(t *testing.T) {
	if len(BareBody) != 100 {
		t.Fatalf("BareBody is %d bytes, want 100", len(BareBody))
	}
}
