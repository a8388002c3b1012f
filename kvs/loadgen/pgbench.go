package loadgen

import (
	"fmt"
	"strings"
)

// PgbenchScript returns a pgbench script that runs stmt, the PostgreSQL
// store's own statement for op (get or put, see postgres.Statement: $1 is
// the key, $2 the value), on a key
// drawn uniformly from the same keyspace as Run (Key(0) ... Key(keys-1)).
// Run it with `pgbench -M prepared`, so that, as with pgx, the statement is
// prepared once per connection and the key and value travel as parameters.
// The put script reads the value from the variable v, which the caller
// defines as bytea text: pgbench -D 'v=\x0123...'.
func PgbenchScript(op Op, stmt string, keys int) (string, error) {
	if keys < 1 {
		return "", fmt.Errorf("pgbench script: want a positive keyspace, not %d", keys)
	}
	if op != OpGet && op != OpPut {
		return "", fmt.Errorf("pgbench script: unknown operation %q: use get or put", op)
	}
	if strings.Contains(stmt, ":") {
		// A colon would be read as a pgbench variable.
		return "", fmt.Errorf("pgbench script: the %s statement contains ':', which pgbench would misread", op)
	}
	stmt = strings.NewReplacer("$1", ":k", "$2", ":v").Replace(stmt)
	var b strings.Builder
	fmt.Fprintf(&b, "-- kvsctl bench: the PostgreSQL store's %s statement on keys %s..%s\n", op, Key(0), Key(keys-1))
	if op == OpPut {
		b.WriteString("-- needs the value: pgbench -D 'v=\\x<hex bytes>'\n")
	}
	fmt.Fprintf(&b, "\\set k random(%d, %d)\n", KeyBase, KeyBase+keys-1)
	b.WriteString(stmt)
	b.WriteString(";\n")
	return b.String(), nil
}
