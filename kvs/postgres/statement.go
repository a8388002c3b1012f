package postgres

// Statement returns the SQL the PostgreSQL store runs for an
// unconditional Get (op "get": $1 is the key) or Put (op "put": $1 the key,
// $2 the value), and false for any other op. Table names are unqualified:
// the store resolves them through search_path. `kvsctl bench` replays these
// statements with pgbench, so that the comparison with PostgreSQL itself
// runs exactly what the store runs.
func Statement(op string) (string, bool) {
	switch op {
	case "get":
		return sqlGet, true
	case "put":
		return sqlUpsert, true
	}
	return "", false
}
