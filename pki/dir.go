package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Mode is the kind of PKI a directory holds.
type Mode int

// The two layouts a PKI directory can have.
const (
	// ModeCA: a local CA signs the server and client certificates; each side
	// trusts the CA.
	ModeCA Mode = iota + 1
	// ModeSelfSigned: server and client each hold a self-signed certificate
	// and each side trusts exactly the other's.
	ModeSelfSigned
)

func (m Mode) String() string {
	switch m {
	case ModeCA:
		return "ca"
	case ModeSelfSigned:
		return "self-signed"
	}
	return "none"
}

// ErrNoPKI is wrapped by errors about a directory that holds no PKI yet.
var ErrNoPKI = errors.New("pki: no PKI")

// ErrNoCA is wrapped by errors about a directory that holds no CA.
var ErrNoCA = errors.New("pki: no CA")

// Dir is a PKI directory and the names of the files in it.
type Dir string

// Path joins name to the directory.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// CACert is the CA certificate path.
func (d Dir) CACert() string { return d.Path("ca.crt") }

// CAKey is the CA private key path.
func (d Dir) CAKey() string { return d.Path("ca.key") }

// ServerCert is the server certificate path.
func (d Dir) ServerCert() string { return d.Path("server.crt") }

// ServerKey is the server private key path.
func (d Dir) ServerKey() string { return d.Path("server.key") }

// ClientCert is the default client certificate path.
func (d Dir) ClientCert() string { return d.Path("client.crt") }

// ClientKey is the default client private key path.
func (d Dir) ClientKey() string { return d.Path("client.key") }

// CRL is the path of the CRL file: one CRL per CA of the directory (in a
// flat PKI, the CA's only).
func (d Dir) CRL() string { return d.Path("crl.pem") }

// IntermediateCert is the certificate path of the issuing intermediate CA
// of a hierarchy: the CA that signs new leaves.
func (d Dir) IntermediateCert() string { return d.Path("intermediate.crt") }

// IntermediateKey is the key path of the issuing intermediate CA.
func (d Dir) IntermediateKey() string { return d.Path("intermediate.key") }

// Intermediates is the path of the bundle of every intermediate CA still
// in service (the issuing one first): the CAs whose CRLs servers load.
func (d Dir) Intermediates() string { return d.Path("intermediates.pem") }

// RetiredCert is the certificate path of a CA replaced by a rotation, by
// its serial (hex).
func (d Dir) RetiredCert(serial string) string {
	return filepath.Join(string(d), "retired", serial+".crt")
}

// RetiredKey is the key path of a CA replaced by a rotation: it re-signs
// that CA's CRL until the CA is retired.
func (d Dir) RetiredKey(serial string) string {
	return filepath.Join(string(d), "retired", serial+".key")
}

// Hierarchy reports whether the directory holds a root and an issuing
// intermediate (what 'pki init' makes), rather than a flat CA that signs
// leaves itself (what 'pki init --flat' and releases before the hierarchy
// make).
func (d Dir) Hierarchy() bool { return exists(d.IntermediateCert()) }

// Inventory is the inventory path.
func (d Dir) Inventory() string { return d.Path("inventory.json") }

// IssuedCert is the certificate path of a leaf issued under name.
func (d Dir) IssuedCert(name string) string { return filepath.Join(string(d), "issued", name+".crt") }

// IssuedKey is the key path of a leaf issued under name.
func (d Dir) IssuedKey(name string) string { return filepath.Join(string(d), "issued", name+".key") }

// Mode tells which layout the directory holds: CA mode when ca.crt exists,
// self-signed mode when only server.crt does. It returns an error wrapping
// ErrNoPKI, with the command that fixes it, when there is neither.
func (d Dir) Mode() (Mode, error) {
	if exists(d.CACert()) {
		return ModeCA, nil
	}
	if exists(d.ServerCert()) {
		return ModeSelfSigned, nil
	}
	return 0, errorOf(ErrNoPKI, "no certificates in %s", string(d))
}

// Files is a set of TLS file paths for one side of a connection.
type Files struct {
	CA   string // the roots this side trusts
	Cert string // this side's certificate
	Key  string // this side's private key
	// CRLs are the files of the CRLs to check peers against (each may
	// hold several PEM blocks, one CRL per issuing CA).
	CRLs []string
	// Intermediates, when set, is a bundle of intermediate CAs of the
	// trusted roots that are in service: a server accepts their CRLs
	// even when no peer has presented them yet.
	Intermediates string
}

// ServerFiles returns the files the server uses: in CA mode the CA bundle
// holds the roots for clients, crl.pem is checked and, in a hierarchy,
// intermediates.pem names the intermediates whose CRLs it holds (it is listed even when it does
// not exist, so that a server can refuse to start without it, or watch for
// it); in self-signed mode the client's certificate is the only root and
// there is no CRL.
func (d Dir) ServerFiles() (Files, error) {
	m, err := d.Mode()
	if err != nil {
		return Files{}, err
	}
	f := Files{Cert: d.ServerCert(), Key: d.ServerKey()}
	if m == ModeCA {
		f.CA = d.CACert()
		f.CRLs = []string{d.CRL()} // even when it is missing: a server requires or watches it
		if d.Hierarchy() {
			f.Intermediates = d.Intermediates()
		}
	} else {
		f.CA = d.ClientCert()
	}
	return f, nil
}

// ClientFiles returns the files the default client uses: in CA mode the CA is
// the root for the server; in self-signed mode the server's certificate is the
// only root.
func (d Dir) ClientFiles() (Files, error) {
	m, err := d.Mode()
	if err != nil {
		return Files{}, err
	}
	f := Files{Cert: d.ClientCert(), Key: d.ClientKey(), CA: d.CACert()}
	if m == ModeSelfSigned {
		f.CA = d.ServerCert()
	}
	return f, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName validates a certificate name used as a file name under issued/.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
