package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Inspection is what [Inspect] found in a file: any number of certificates,
// certificate requests and CRLs, in file order within each kind.
type Inspection struct {
	Certificates []CertInfo `json:"certificates,omitempty"`
	CSRs         []CSRInfo  `json:"csrs,omitempty"`
	CRLs         []CRLInfo  `json:"crls,omitempty"`
	// Skipped lists PEM blocks that were not inspected, such as private
	// keys, whose content is never shown.
	Skipped []string `json:"skipped,omitempty"`
}

// CertInfo describes a certificate.
type CertInfo struct {
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	Serial             string    `json:"serial"` // lower-case hex, as in the inventory
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	Status             string    `json:"status"`    // valid, not yet valid or expired
	TimeLeft           string    `json:"time_left"` // e.g. "824d 23h", "expired 3d 2h ago"
	SecondsLeft        int64     `json:"seconds_left"`
	DNSNames           []string  `json:"dns_names,omitempty"`
	IPAddresses        []string  `json:"ip_addresses,omitempty"`
	Emails             []string  `json:"emails,omitempty"`
	URIs               []string  `json:"uris,omitempty"`
	KeyAlgorithm       string    `json:"key_algorithm"` // RSA, ECDSA or Ed25519
	KeySize            int       `json:"key_size"`      // bits
	KeyCurve           string    `json:"key_curve,omitempty"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
	KeyUsage           []string  `json:"key_usage,omitempty"`
	ExtKeyUsage        []string  `json:"ext_key_usage,omitempty"`
	IsCA               bool      `json:"is_ca"`
	// MaxPathLen is the CA's path length constraint; nil when there is
	// none (or the certificate is not a CA).
	MaxPathLen     *int   `json:"max_path_len,omitempty"`
	SelfSigned     bool   `json:"self_signed"`
	SubjectKeyID   string `json:"subject_key_id,omitempty"`
	AuthorityKeyID string `json:"authority_key_id,omitempty"`
	// NameConstraints are the permitted names of a CA, as TYPE:VALUE
	// ("DNS:example.com", "IP:127.0.0.0/8"), excluded ones prefixed with
	// "excluded ".
	NameConstraints []string `json:"name_constraints,omitempty"`
	// NameConstraintsCritical tells whether the extension is critical.
	NameConstraintsCritical bool     `json:"name_constraints_critical,omitempty"`
	CRLDistributionPoints   []string `json:"crl_distribution_points,omitempty"`
	SHA256                  string   `json:"sha256_fingerprint"` // colon-separated upper-case hex, like openssl
}

// CSRInfo describes a certificate signing request.
type CSRInfo struct {
	Subject            string   `json:"subject"`
	DNSNames           []string `json:"dns_names,omitempty"`
	IPAddresses        []string `json:"ip_addresses,omitempty"`
	Emails             []string `json:"emails,omitempty"`
	URIs               []string `json:"uris,omitempty"`
	KeyAlgorithm       string   `json:"key_algorithm"`
	KeySize            int      `json:"key_size"`
	KeyCurve           string   `json:"key_curve,omitempty"`
	SignatureAlgorithm string   `json:"signature_algorithm"`
	SignatureValid     bool     `json:"signature_valid"`
	// RequestedExtensions names every extension the CSR asks for. 'kvsctl
	// pki sign' copies only the subject alternative names.
	RequestedExtensions []string `json:"requested_extensions,omitempty"`
	SHA256              string   `json:"sha256_fingerprint"`
}

// CRLInfo describes a certificate revocation list.
type CRLInfo struct {
	Issuer             string       `json:"issuer"`
	Number             string       `json:"number"` // decimal
	ThisUpdate         time.Time    `json:"this_update"`
	NextUpdate         time.Time    `json:"next_update"`
	Status             string       `json:"status"` // current, not yet valid or expired
	TimeLeft           string       `json:"time_left"`
	SecondsLeft        int64        `json:"seconds_left"`
	SignatureAlgorithm string       `json:"signature_algorithm"`
	AuthorityKeyID     string       `json:"authority_key_id,omitempty"`
	Revoked            []RevokedRef `json:"revoked"`
	SHA256             string       `json:"sha256_fingerprint"`
}

// RevokedRef is one entry of a CRL.
type RevokedRef struct {
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revoked_at"`
	Reason    string    `json:"reason"`
}

// ErrNothingToInspect is wrapped when a file holds no certificate, CSR or
// CRL.
var ErrNothingToInspect = errors.New("pki: no certificate, CSR or CRL found")

// Inspect decodes every certificate, certificate request and CRL in data,
// which may be PEM (any number of blocks) or a single DER object, and
// describes them as of now. Private keys are skipped, never described.
func Inspect(data []byte, now time.Time) (*Inspection, error) {
	if now.IsZero() {
		now = time.Now()
	}
	ins := &Inspection{}
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		var err error
		switch block.Type {
		case "CERTIFICATE":
			err = ins.addCert(block.Bytes, now)
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
			err = ins.addCSR(block.Bytes)
		case "X509 CRL":
			err = ins.addCRL(block.Bytes, now)
		default:
			ins.Skipped = append(ins.Skipped, block.Type)
		}
		if err != nil {
			return nil, err
		}
	}
	if !sawPEM {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, errorOf(ErrNothingToInspect, "file is empty")
		}
		if bytes.Contains(data, []byte("-----BEGIN ")) {
			return nil, errorOf(ErrNothingToInspect, "corrupt PEM: no block between -----BEGIN and -----END decodes")
		}
		// DER: try each kind; report the certificate error when none fits.
		certErr := ins.addCert(data, now)
		if certErr != nil && ins.addCSR(data) != nil && ins.addCRL(data, now) != nil {
			return nil, errorOf(ErrNothingToInspect, "not a PEM file, nor a DER certificate, CSR or CRL (%v)", certErr)
		}
	}
	if len(ins.Certificates)+len(ins.CSRs)+len(ins.CRLs) == 0 {
		if len(ins.Skipped) > 0 {
			return nil, errorOf(ErrNothingToInspect, "no certificate, CSR or CRL found, only %s (never shown)", strings.Join(ins.Skipped, ", "))
		}
		return nil, errorOf(ErrNothingToInspect, "no certificate, CSR or CRL found")
	}
	return ins, nil
}

func (ins *Inspection) addCert(der []byte, now time.Time) error {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	ins.Certificates = append(ins.Certificates, DescribeCert(c, now))
	return nil
}

func (ins *Inspection) addCSR(der []byte) error {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fmt.Errorf("parse certificate request: %w", err)
	}
	ins.CSRs = append(ins.CSRs, DescribeCSR(csr))
	return nil
}

func (ins *Inspection) addCRL(der []byte, now time.Time) error {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("parse CRL: %w", err)
	}
	ins.CRLs = append(ins.CRLs, DescribeCRL(rl, now))
	return nil
}

// DescribeCert describes a certificate as of now.
func DescribeCert(c *x509.Certificate, now time.Time) CertInfo {
	ci := CertInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: SerialHex(c),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		DNSNames: c.DNSNames, Emails: c.EmailAddresses,
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		KeyUsage:           keyUsageNames(c.KeyUsage),
		IsCA:               c.BasicConstraintsValid && c.IsCA,
		SelfSigned:         IsSelfSigned(c),
		SubjectKeyID:       colonHex(c.SubjectKeyId),
		AuthorityKeyID:     colonHex(c.AuthorityKeyId),
		SHA256:             Fingerprint(c.Raw),
	}
	ci.Status, ci.TimeLeft, ci.SecondsLeft = window(c.NotBefore, c.NotAfter, now, "valid")
	for _, ip := range c.IPAddresses {
		ci.IPAddresses = append(ci.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		ci.URIs = append(ci.URIs, u.String())
	}
	ci.KeyAlgorithm, ci.KeySize, ci.KeyCurve = keyParams(c.PublicKey)
	for _, u := range c.ExtKeyUsage {
		ci.ExtKeyUsage = append(ci.ExtKeyUsage, extKeyUsageName(u))
	}
	for _, oid := range c.UnknownExtKeyUsage {
		ci.ExtKeyUsage = append(ci.ExtKeyUsage, oid.String())
	}
	if ci.IsCA && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
		n := c.MaxPathLen
		ci.MaxPathLen = &n
	}
	ci.NameConstraints = ConstraintsOf(c).Strings()
	excluded := NameConstraints{DNS: c.ExcludedDNSDomains, IPs: c.ExcludedIPRanges, Emails: c.ExcludedEmailAddresses, URIs: c.ExcludedURIDomains}
	for _, e := range excluded.Strings() {
		ci.NameConstraints = append(ci.NameConstraints, "excluded "+e)
	}
	ci.NameConstraintsCritical = c.PermittedDNSDomainsCritical
	ci.CRLDistributionPoints = c.CRLDistributionPoints
	return ci
}

// DescribeCSR describes a certificate signing request, including whether its
// self-signature verifies.
func DescribeCSR(csr *x509.CertificateRequest) CSRInfo {
	ci := CSRInfo{
		Subject: csr.Subject.String(), DNSNames: csr.DNSNames, Emails: csr.EmailAddresses,
		SignatureAlgorithm: csr.SignatureAlgorithm.String(),
		SignatureValid:     csr.CheckSignature() == nil,
		SHA256:             Fingerprint(csr.Raw),
	}
	for _, ip := range csr.IPAddresses {
		ci.IPAddresses = append(ci.IPAddresses, ip.String())
	}
	for _, u := range csr.URIs {
		ci.URIs = append(ci.URIs, u.String())
	}
	ci.KeyAlgorithm, ci.KeySize, ci.KeyCurve = keyParams(csr.PublicKey)
	for _, e := range csr.Extensions {
		ci.RequestedExtensions = append(ci.RequestedExtensions, describeExtension(e.Id, e.Value, e.Critical))
	}
	return ci
}

// DescribeCRL describes a CRL as of now. It does not check the signature.
func DescribeCRL(rl *x509.RevocationList, now time.Time) CRLInfo {
	ci := CRLInfo{
		Issuer: rl.Issuer.String(), ThisUpdate: rl.ThisUpdate.UTC(), NextUpdate: rl.NextUpdate.UTC(),
		SignatureAlgorithm: rl.SignatureAlgorithm.String(),
		AuthorityKeyID:     colonHex(rl.AuthorityKeyId),
		Revoked:            []RevokedRef{},
		SHA256:             Fingerprint(rl.Raw),
	}
	if rl.Number != nil {
		ci.Number = rl.Number.String()
	}
	if rl.NextUpdate.IsZero() {
		ci.Status, ci.TimeLeft = "current", "no next update"
	} else {
		ci.Status, ci.TimeLeft, ci.SecondsLeft = window(rl.ThisUpdate, rl.NextUpdate, now, "current")
	}
	for _, e := range rl.RevokedCertificateEntries {
		serial := "?"
		if e.SerialNumber != nil {
			serial = e.SerialNumber.Text(16)
		}
		ci.Revoked = append(ci.Revoked, RevokedRef{Serial: serial, RevokedAt: e.RevocationTime.UTC(), Reason: ReasonName(e.ReasonCode)})
	}
	return ci
}

// Fingerprint is the SHA-256 of der as colon-separated upper-case hex, the
// format of 'openssl x509 -fingerprint -sha256'.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return strings.ToUpper(colonHex(sum[:]))
}

func colonHex(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// window returns the status, the human time left and the seconds left of a
// validity window at now. okWord is the status inside the window.
func window(from, to, now time.Time, okWord string) (string, string, int64) {
	left := to.Sub(now)
	switch {
	case now.Before(from):
		return "not yet valid", "starts in " + HumanDuration(from.Sub(now)), int64(left / time.Second)
	case left < 0:
		return "expired", "expired " + HumanDuration(-left) + " ago", int64(left / time.Second)
	}
	return okWord, HumanDuration(left), int64(left / time.Second)
}

// HumanDuration formats d as days and hours ("824d 23h"), hours and minutes
// under a day ("5h 12m"), or minutes and seconds under an hour.
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
	}
	return fmt.Sprintf("%dm %ds", d/time.Minute, (d%time.Minute)/time.Second)
}

var keyUsageBits = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"},
	{x509.KeyUsageContentCommitment, "contentCommitment"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
	{x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"},
	{x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"},
	{x509.KeyUsageEncipherOnly, "encipherOnly"},
	{x509.KeyUsageDecipherOnly, "decipherOnly"},
}

func keyUsageNames(ku x509.KeyUsage) []string {
	var names []string
	for _, b := range keyUsageBits {
		if ku&b.bit != 0 {
			names = append(names, b.name)
		}
	}
	return names
}

func extKeyUsageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageAny:
		return "any"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageCodeSigning:
		return "codeSigning"
	case x509.ExtKeyUsageEmailProtection:
		return "emailProtection"
	case x509.ExtKeyUsageTimeStamping:
		return "timeStamping"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSPSigning"
	}
	return fmt.Sprintf("extKeyUsage(%d)", u)
}

// ReasonName is the RFC 5280 name of a CRL reason code.
func ReasonName(code int) string {
	for name, c := range reasonCodes {
		if c == code {
			return name
		}
	}
	return fmt.Sprintf("reason(%d)", code)
}

var extensionNames = map[string]string{
	"2.5.29.14":         "subjectKeyIdentifier",
	"2.5.29.15":         "keyUsage",
	"2.5.29.17":         "subjectAltName",
	"2.5.29.19":         "basicConstraints",
	"2.5.29.30":         "nameConstraints",
	"2.5.29.31":         "cRLDistributionPoints",
	"2.5.29.32":         "certificatePolicies",
	"2.5.29.35":         "authorityKeyIdentifier",
	"2.5.29.37":         "extKeyUsage",
	"1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
}

// describeExtension names a requested extension; for basicConstraints it adds
// the CA flag, the one request that matters most.
func describeExtension(id asn1.ObjectIdentifier, value []byte, critical bool) string {
	name, ok := extensionNames[id.String()]
	if !ok {
		name = id.String()
	}
	if name == "basicConstraints" {
		var bc struct {
			IsCA    bool `asn1:"optional"`
			PathLen int  `asn1:"optional,default:-1"`
		}
		if _, err := asn1.Unmarshal(value, &bc); err == nil {
			name += fmt.Sprintf(" (CA:%s)", strings.ToUpper(fmt.Sprint(bc.IsCA)))
		}
	}
	if critical {
		name += " critical"
	}
	return name
}

// keyParams splits DescribeKey into algorithm, size in bits and curve.
func keyParams(pub any) (string, int, string) {
	desc := DescribeKey(pub)
	alg, rest, _ := strings.Cut(desc, " ")
	switch alg {
	case "RSA":
		if n, err := strconv.Atoi(rest); err == nil {
			return alg, n, ""
		}
	case "ECDSA":
		size := 0
		switch rest {
		case "P-256":
			size = 256
		case "P-384":
			size = 384
		case "P-521":
			size = 521
		case "P-224":
			size = 224
		}
		return alg, size, rest
	case "Ed25519":
		return alg, 256, ""
	}
	return desc, 0, ""
}

// InspectFile reads a file and runs [Inspect] on it.
func InspectFile(ctx context.Context, path string, now time.Time) (*Inspection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	ins, err := Inspect(data, now)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	return ins, nil
}
