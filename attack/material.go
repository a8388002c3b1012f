package attack

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// Attacker material is made in memory and never written to disk, except
// the certificates the revocation scenarios must record in the inventory
// to revoke them. Certificates signed by the real CA for an attack are
// short-lived (materialLifetime) so that nothing useful outlives the run.
const materialLifetime = time.Hour

// tlsCert pairs a chain with its key.
func tlsCert(key crypto.Signer, chain ...*x509.Certificate) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// selfSigned makes a self-signed leaf for profile with a new key of type kt.
func selfSigned(kt pki.KeyType, profile pki.Profile, subject pkix.Name, hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate %s key: %w", kt, err)
	}
	cert, err := pki.SelfSign(pki.LeafRequest{Profile: profile, Subject: subject, Hosts: hosts, NotAfter: now.Add(materialLifetime)}, key, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tlsCert(key, cert), nil
}

// signedByCA makes a leaf signed by the real CA with a new key; zero
// notBefore/notAfter mean now (backdated by pki) and now+materialLifetime.
func signedByCA(ca *pki.CA, kt pki.KeyType, profile pki.Profile, subject pkix.Name, hosts []string, notBefore, notAfter, now time.Time) (tls.Certificate, error) {
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate %s key: %w", kt, err)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(materialLifetime)
	}
	cert, err := ca.Sign(pki.LeafRequest{
		Profile: profile, Subject: subject, Hosts: hosts, PublicKey: key.Public(),
		NotBefore: notBefore, NotAfter: notAfter,
	}, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tlsCert(key, leafChain(ca, cert)...), nil
}

// leafChain is what a peer presents for a leaf the CA signed: the leaf,
// then the CA when it is an intermediate (as pki writes leaf files), so
// that the server can build the chain to its root and judges the leaf, not
// a missing intermediate.
func leafChain(ca *pki.CA, leaf *x509.Certificate) []*x509.Certificate {
	if len(ca.Chain) == 0 {
		return []*x509.Certificate{leaf}
	}
	return []*x509.Certificate{leaf, ca.Cert}
}

// caChain is the CA and the CAs above it, the CA first.
func caChain(ca *pki.CA) []*x509.Certificate {
	return append([]*x509.Certificate{ca.Cert}, ca.Chain...)
}

// permittedHost returns a DNS name label.DOMAIN that the name constraints
// of every CA of ca's chain permit, DOMAIN being one of their permitted
// domains, or label.invalid when no CA constrains DNS names: the name of a
// certificate the real CA must be able to sign for an attack that is not
// about name constraints.
func permittedHost(ca *pki.CA, label string) string {
	candidates := []string{label + ".invalid"}
	for _, c := range caChain(ca) {
		for _, d := range c.PermittedDNSDomains {
			candidates = append(candidates, label+"."+strings.TrimPrefix(d, "."))
		}
	}
	for _, h := range candidates {
		if permitted(ca, h) {
			return h
		}
	}
	return candidates[0]
}

// permitted reports whether every CA of ca's chain permits the host (a DNS
// name or an IP address).
func permitted(ca *pki.CA, host string) bool {
	for _, c := range caChain(ca) {
		if !pki.ConstraintsOf(c).Permits(host) {
			return false
		}
	}
	return true
}

// Names a forged leaf carries to step outside name constraints: reserved
// names and documentation addresses, which no real PKI certifies.
const forgedDNS = "kvsctl-attack-forged.invalid"

var forgedIPs = []string{"192.0.2.66", "2001:db8::66"}

// outsideName picks a SAN outside the DNS or IP name constraints of a CA
// of ca's chain (ca first), and returns it with that CA; by is nil when no
// CA of the chain constrains DNS names or IP addresses.
func outsideName(ca *pki.CA) (dns string, ip net.IP, by *x509.Certificate) {
	for _, c := range caChain(ca) {
		nc := pki.ConstraintsOf(c)
		if len(nc.DNS) > 0 && !nc.Permits(forgedDNS) {
			return forgedDNS, nil, c
		}
		if len(nc.IPs) > 0 {
			for _, a := range forgedIPs {
				if !nc.Permits(a) {
					return "", net.ParseIP(a), c
				}
			}
		}
	}
	return "", nil, nil
}

// forgeLeaf makes a client certificate signed with the CA's key through
// crypto/x509 directly, as whoever holds the key can: pki's own checks
// (the name constraints above all) are not applied.
func forgeLeaf(ca *pki.CA, kt pki.KeyType, subject pkix.Name, dns []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate %s key: %w", kt, err)
	}
	serial, err := pki.NewSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        subject,
		NotBefore:      now.Add(-pki.Backdate),
		NotAfter:       now.Add(materialLifetime),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:       dns,
		IPAddresses:    ips,
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("forge the certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse the forged certificate: %w", err)
	}
	return tlsCert(key, leafChain(ca, leaf)...), nil
}

// lookAlikeCA makes a rogue CA whose certificate copies the subject name
// and subject key id of anchor (the root the server trusts), so that a
// verifier looking issuers up by name or key id finds the real one, and a
// client certificate for subject issued by it that names anchor's key id as
// its authority key id. The chain sent is the leaf and the rogue CA.
func lookAlikeCA(anchor *x509.Certificate, kt pki.KeyType, subject pkix.Name, now time.Time) (tls.Certificate, error) {
	caKey, err := pki.GenerateKey(kt)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate %s key: %w", kt, err)
	}
	leafKey, err := pki.GenerateKey(kt)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate %s key: %w", kt, err)
	}
	serial, err := pki.NewSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            anchor.RawSubject,
		SubjectKeyId:          anchor.SubjectKeyId,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(materialLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create look-alike CA: %w", err)
	}
	rogueCA, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse look-alike CA: %w", err)
	}
	if serial, err = pki.NewSerial(); err != nil {
		return tls.Certificate{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        subject,
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.Add(materialLifetime),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: anchor.SubjectKeyId,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, rogueCA, leafKey.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create client certificate of the look-alike CA: %w", err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse client certificate of the look-alike CA: %w", err)
	}
	return tlsCert(leafKey, leaf, rogueCA), nil
}

// CBC and RSA-key-exchange suites: what a downgrade probe offers. None is
// AEAD with forward secrecy.
var weakSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
}
