package attack

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestAttackDemoPostgres runs the demo on PostgreSQL: it must work in a
// schema of its own and drop it afterwards. Without KVS_TEST_DATABASE the
// test skips loudly, or fails under CI=true.
func TestAttackDemoPostgres(t *testing.T) {
	db := pgtest.Database(t)
	t.Setenv("TMPDIR", t.TempDir())
	rep, err := Demo(context.Background(), DemoOptions{Store: db, Scenarios: []string{"control", "no-client-cert", "outside-policy", "revoked-client"}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || !rep.StoreCheck.Done || len(rep.Results) != 4 {
		t.Errorf("report OK=%v, store check %+v, %d results; failures %+v", rep.OK, rep.StoreCheck, len(rep.Results), rep.Failures())
	}
	m := regexp.MustCompile(`schema (kvsctl_attack_[0-9a-f]+) \(dropped after\)`).FindStringSubmatch(rep.Store)
	if m == nil {
		t.Fatalf("store %q does not name its schema", rep.Store)
	}
	if strings.Contains(rep.Store, "@") && !strings.Contains(db, "@") {
		t.Errorf("store description %q", rep.Store)
	}
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", m[1]).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("schema %s was not dropped", m[1])
	}
}

func TestAttackDemoStoreURL(t *testing.T) {
	const pw = "s3cr3t-Pw"
	for _, u := range []string{"bolt:/tmp/x.db", "mysql://u:" + pw + "@h/db"} {
		t.Setenv("TMPDIR", t.TempDir())
		_, err := Demo(context.Background(), DemoOptions{Store: u, Scenarios: []string{"control"}})
		if err == nil || strings.Contains(err.Error(), pw) {
			t.Errorf("store %q: err = %v, want an error without the password", u, err)
		}
		if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
			t.Errorf("store %q: left %v behind", u, left)
		}
	}
}

func TestAttackDemoPostgresPasswordNotShown(t *testing.T) {
	const pw = "s3cr3t-Pw"
	t.Setenv("TMPDIR", t.TempDir())
	_, err := Demo(context.Background(), DemoOptions{Store: "postgres://kvs:" + pw + "@127.0.0.1:1/kvs", Scenarios: []string{"control"}})
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("err = %v, want an error without the password", err)
	}
}
