package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/smallstep/truststore"
)

// ErrUnconstrainedCA is wrapped when a CA to install into a trust store has
// no name constraints: whoever holds its key could then make this machine
// trust a certificate for any name, *.google.com included.
var ErrUnconstrainedCA = errors.New("pki: CA has no name constraints")

// TrustOptions configures [InstallTrust] and [UninstallTrust].
type TrustOptions struct {
	Dir    Dir
	CAFile string // "" means Dir's ca.crt
	NSS    bool   // also the NSS databases of Firefox and Chrome (needs certutil)
	Java   bool   // also the Java trust store of $JAVA_HOME (needs keytool)
	// AllowUnconstrained installs a CA that has no name constraints (see
	// [CheckNameConstrained]), which [InstallTrust] refuses otherwise.
	AllowUnconstrained bool
}

// TrustChange is one trust store [InstallTrust] or [UninstallTrust] touched
// or skipped.
type TrustChange struct {
	Store  string `json:"store"`  // "system", "nss" or "java"
	Action string `json:"action"` // "installed", "removed" or "skipped"
	Detail string `json:"detail"`
}

// TrustResult says what changed.
type TrustResult struct {
	Cert    *x509.Certificate
	Changes []TrustChange
}

// CheckTrustable returns an error unless c is a self-signed CA certificate:
// basic constraints CA:TRUE, keyCertSign when key usage is present, issuer
// equal to subject and a signature that verifies with its own key. Only such
// a certificate belongs in a trust store.
func CheckTrustable(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%s is not a CA certificate (no basicConstraints CA:TRUE): refusing to make it a trusted root", c.Subject)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s may not sign certificates (no keyCertSign): refusing to make it a trusted root", c.Subject)
	}
	if !IsSelfSigned(c) {
		return fmt.Errorf("%s is not self-signed (issued by %s): only a root CA belongs in a trust store", c.Subject, c.Issuer)
	}
	return nil
}

// CheckNameConstrained returns an error wrapping ErrUnconstrainedCA when
// the CA certificate c has no name constraints at all: no permitted or
// excluded DNS domains, IP ranges, e-mail addresses or URI domains, and no
// critical name constraints extension. Such a CA can sign for any name.
func CheckNameConstrained(c *x509.Certificate) error {
	if c.PermittedDNSDomainsCritical ||
		len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+
			len(c.PermittedIPRanges)+len(c.ExcludedIPRanges)+
			len(c.PermittedEmailAddresses)+len(c.ExcludedEmailAddresses)+
			len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) > 0 {
		return nil
	}
	return errorOf(ErrUnconstrainedCA, "CA %s has no name constraints: it can sign a certificate for any name, *.google.com included, and a trust store would accept it everywhere", c.Subject)
}

// InstallTrust adds a self-signed CA to the system trust store and, when
// asked, to the NSS and Java stores, using github.com/smallstep/truststore.
// A CA on a weak key is refused with ErrWeakKey ([CheckPublicKey]), and a
// CA without name constraints, with an error wrapping ErrUnconstrainedCA,
// unless o.AllowUnconstrained; these checks, like every other, run before
// any trust store is touched. The system store needs
// root (truststore runs sudo when it is installed). When a command fails,
// the error includes that command's output.
func InstallTrust(ctx context.Context, o TrustOptions) (*TrustResult, error) {
	return changeTrust(ctx, o, true)
}

// UninstallTrust removes a CA that [InstallTrust] added.
func UninstallTrust(ctx context.Context, o TrustOptions) (*TrustResult, error) {
	return changeTrust(ctx, o, false)
}

func changeTrust(ctx context.Context, o TrustOptions, install bool) (*TrustResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	file := o.CAFile
	if file == "" {
		file = o.Dir.CACert()
		if !exists(file) {
			return nil, errorOf(ErrNoCA, "no CA in %s", string(o.Dir))
		}
	}
	cert, err := LoadCert(file)
	if err != nil {
		return nil, err
	}
	if err := CheckTrustable(cert); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if install {
		if err := CheckPublicKey(cert.PublicKey); err != nil {
			return nil, fmt.Errorf("%s: CA %s: %w", file, cert.Subject, err)
		}
	}
	if install && !o.AllowUnconstrained {
		if err := CheckNameConstrained(cert); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	res := &TrustResult{Cert: cert}
	verb, done := "uninstall", "removed"
	if install {
		verb, done = "install", "installed"
	}

	var opts []truststore.Option
	type extra struct {
		name  string
		trust truststore.Trust
	}
	var extras []extra
	if o.NSS {
		t, err := truststore.NewNSSTrust()
		if err != nil {
			return nil, fmt.Errorf("NSS trust stores: certutil not found (%v): install it with %s", err, "'apt install libnss3-tools' or 'yum install nss-tools'")
		}
		extras = append(extras, extra{"nss", t})
	}
	if o.Java {
		t, err := truststore.NewJavaTrust()
		if err != nil {
			return nil, fmt.Errorf("no Java trust store found (%v): set JAVA_HOME to a JDK with bin/keytool", err)
		}
		extras = append(extras, extra{"java", t})
	}
	for _, e := range extras {
		if err := e.trust.PreCheck(); err != nil {
			// truststore would skip it silently; say so instead.
			res.Changes = append(res.Changes, TrustChange{Store: e.name, Action: "skipped", Detail: err.Error()})
			continue
		}
		opts = append(opts, truststore.WithTrust(e.trust))
		detail := "NSS databases (Firefox, Chrome)"
		if e.name == "java" {
			detail = "Java cacerts of $JAVA_HOME"
		}
		res.Changes = append(res.Changes, TrustChange{Store: e.name, Action: done, Detail: detail})
	}

	sys, err := systemStore(cert)
	if err != nil {
		return nil, fmt.Errorf("%s CA: %w", verb, err)
	}
	_, statErr := os.Stat(sys.file)
	already := sys.file != "" && statErr == nil
	fn := truststore.Uninstall
	if install {
		fn = truststore.Install
	}
	if err := fn(cert, opts...); err != nil {
		return nil, trustError(verb, err)
	}
	sysDetail := sys.describe()
	switch {
	case install && already:
		sysDetail = "already present, refreshed: " + sysDetail
	case !install && !already:
		sysDetail = "was not installed: " + sysDetail
	}
	res.Changes = append([]TrustChange{{Store: "system", Action: done, Detail: sysDetail}}, res.Changes...)
	return res, nil
}

// trustError turns a truststore failure into an error that carries the
// failing command's own output, not just "exit status 1".
func trustError(verb string, err error) error {
	var ce *truststore.CmdError
	if errors.As(err, &ce) {
		out := strings.TrimSpace(string(ce.Out()))
		if out == "" {
			return fmt.Errorf("%s CA: %w (no output)", verb, err)
		}
		return fmt.Errorf("%s CA: %w; its output:\n  %s", verb, err, strings.ReplaceAll(out, "\n", "\n  "))
	}
	return fmt.Errorf("%s CA: %w", verb, err)
}

// IsSelfSigned reports whether c names itself as issuer and its signature
// verifies with its own public key. Unlike c.CheckSignatureFrom(c) it also
// holds for a self-signed leaf, which is not a CA.
func IsSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
