package bolt

import (
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// TestBoltCommitterSharesCommitsAndIsolatesFailures runs many concurrent
// writes, some failing and one panicking: every good write is committed,
// each bad one gets its own error, and the writes shared commits.
func TestBoltCommitterSharesCommitsAndIsolatesFailures(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	c := newCommitter(db)
	boom := errors.New("boom")
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = c.update(func(tx *bbolt.Tx) error {
				switch {
				case i == 7:
					panic("bad write")
				case i%50 == 3:
					return boom
				}
				return tx.Bucket([]byte("b")).Put([]byte(strconv.Itoa(i)), []byte("v"))
			})
		})
	}
	wg.Wait()
	c.close()
	for i, err := range errs {
		switch {
		case i == 7:
			if err == nil || errors.Is(err, boom) {
				t.Errorf("write %d panicked: got %v", i, err)
			}
		case i%50 == 3:
			if !errors.Is(err, boom) {
				t.Errorf("write %d failed: got %v, want boom", i, err)
			}
		case err != nil:
			t.Errorf("write %d: %v", i, err)
		}
	}
	var keys int
	db.View(func(tx *bbolt.Tx) error { keys = tx.Bucket([]byte("b")).Stats().KeyN; return nil })
	if want := n - 1 - 4; keys != want {
		t.Errorf("%d keys committed, want %d", keys, want)
	}
	st := db.Stats()
	t.Logf("%d concurrent writes took %d write transactions", n, st.TxStats.GetWrite())
}
