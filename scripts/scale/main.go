// Command scale holds the Go pieces of scripts/bench-scale.sh ('make
// bench-scale'): it makes the large inputs (a CRL of N revoked serials, a
// policy of N identities), measures the TLS snapshot a CRL costs, and turns
// the script's figures into docs/scale.md with PNG plots (gonum.org/v1/plot).
//
// It is a Go module of its own so that the product's go.mod never depends
// on the plotting library; it uses the product's packages through a replace
// directive.
//
//	scale gencrl -dir PKI -n 100000      # rewrite PKI/crl.pem
//	scale snapshot -dir PKI              # JSON: load and reload time, heap
//	scale policy -n 10000 -cn client     # a policy file on stdout
//	scale report -in results.tsv -md docs/scale.md -plots docs/scale
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: scale gencrl|snapshot|policy|report [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "gencrl":
		err = genCRL(args)
	case "snapshot":
		err = snapshot(args)
	case "policy":
		err = genPolicy(args)
	case "report":
		err = report(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		os.Exit(1)
	}
}
