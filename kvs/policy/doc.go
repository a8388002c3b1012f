// Package policy says what each client identity may do on the key-value
// store: which key prefixes, which operations. A policy file (YAML or JSON)
// names identities; a certificate that matches none of them is denied.
//
// Parse reads a policy and refuses anything ambiguous (unknown fields,
// unknown operations, an identity without prefixes), because a typo must
// not silently widen or narrow access. A parsed Policy is immutable; the
// server reloads the file by parsing it again and swapping the result in.
//
// The package has no state, reads no files and logs nothing.
package policy
