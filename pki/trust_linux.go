package pki

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/smallstep/truststore"
)

// systemTrust is where the system store keeps a CA and what updates it.
type systemTrust struct {
	file string   // the CA's file in the store
	cmd  []string // the command that rebuilds the store
}

func (s systemTrust) describe() string {
	return fmt.Sprintf("%s (ran %s)", s.file, strings.Join(s.cmd, " "))
}

// systemStore finds this machine's system trust store (Debian, Red Hat,
// Arch, SUSE layouts, as truststore knows them).
func systemStore(cert *x509.Certificate) (systemTrust, error) {
	if len(truststore.SystemTrustCommand) == 0 {
		return systemTrust{}, fmt.Errorf("no supported system trust store on this machine (%w)", truststore.ErrNotSupported)
	}
	return systemTrust{file: SystemTrustFile(cert), cmd: truststore.SystemTrustCommand}, nil
}

// SystemTrustFile is where truststore puts cert in the system store on this
// machine (it names the file after the common name and the decimal serial).
func SystemTrustFile(cert *x509.Certificate) string {
	name := "Truststore Development CA " + cert.SerialNumber.String()
	if cert.Subject.CommonName != "" {
		name = cert.Subject.CommonName + " " + cert.SerialNumber.String()
	}
	return fmt.Sprintf(truststore.SystemTrustFilename, strings.ReplaceAll(name, " ", "_"))
}
