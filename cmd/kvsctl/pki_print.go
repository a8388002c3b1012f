package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvsctl/kvsctl/pki"
	"github.com/urfave/cli/v2"
)

// Output of the pki commands: human-readable text on stdout, or JSON with
// --json. Nothing here ever prints key material.

func pkiJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	return nil
}

func pkiStamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") }

func pkiDay(t time.Time) string { return t.UTC().Format("2006-01-02") }

// pkiSANs formats subject alternative names, each with its type, as
// "DNS:a.example, IP:10.0.0.1, email:ops@example.org, URI:spiffe://x/y";
// a value with a control character is quoted (safe).
// It is the one SAN formatter of the pki output: every output that shows a
// certificate, a CSR or an inventory record shows all of its SANs through
// it, so a SAN of any type is never hidden.
func pkiSANs(dns, ips, emails, uris []string) string {
	var out []string
	for _, d := range dns {
		out = append(out, "DNS:"+safe(d))
	}
	for _, ip := range ips {
		out = append(out, "IP:"+safe(ip))
	}
	for _, e := range emails {
		out = append(out, "email:"+safe(e))
	}
	for _, u := range uris {
		out = append(out, "URI:"+safe(u))
	}
	return strings.Join(out, ", ")
}

// pkiCertSANs is pkiSANs of a certificate.
func pkiCertSANs(c *x509.Certificate) string {
	var ips, uris []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	return pkiSANs(c.DNSNames, ips, c.EmailAddresses, uris)
}

// pkiRecordSANs is pkiSANs of an inventory record. Its hosts hold the DNS
// names and the IP addresses together; kvsctl never issues a DNS SAN that
// parses as an IP address (it becomes an IP SAN), so parsing tells them
// apart.
func pkiRecordSANs(r pki.Record) string {
	var dns, ips []string
	for _, h := range r.Hosts {
		if net.ParseIP(h) != nil {
			ips = append(ips, h)
		} else {
			dns = append(dns, h)
		}
	}
	return pkiSANs(dns, ips, r.Emails, r.URIs)
}

func pkiPrintInit(w io.Writer, d pki.Dir, kt pki.KeyType, encrypted bool, res *pki.InitResult) {
	desc := map[string]string{
		d.CAKey():      "CA private key (0600, unencrypted: keep it offline, or use --passphrase-file)",
		d.CRL():        "signed CRL, empty",
		d.Inventory():  "inventory of the certificates the CA issues",
		d.ServerKey():  "server private key (0600)",
		d.ClientKey():  "client private key (0600)",
		d.ServerCert(): "server certificate for " + pkiCertSANs(res.Server) + ", until " + pkiDay(res.Server.NotAfter),
		d.ClientCert(): "client certificate CN=" + safe(res.Client.Subject.CommonName) + ", until " + pkiDay(res.Client.NotAfter),
	}
	if encrypted {
		desc[d.CAKey()] = "CA private key (0600, encrypted with your passphrase)"
	}
	if res.CA != nil {
		desc[d.CACert()] = "CA certificate " + safe(res.CA.Subject.String()) + ", until " + pkiDay(res.CA.NotAfter)
		desc[d.CRL()] = fmt.Sprintf("signed CRL, empty, valid until %s: re-sign it with 'kvsctl pki crl'", pkiStamp(res.CRL.NextUpdate))
	}
	if in := res.Intermediate; in != nil {
		desc[d.CAKey()] = "root CA private key (0600, unencrypted): needed only for new intermediates, take it offline"
		if encrypted {
			desc[d.CAKey()] = "root CA private key (0600, encrypted): needed only for new intermediates, take it offline"
		}
		desc[d.CACert()] = "root CA " + safe(res.CA.Subject.CommonName) + ", until " + pkiDay(res.CA.NotAfter) + pkiConstraintNote(res.CA) + ": the trust bundle"
		desc[d.IntermediateKey()] = "issuing CA private key (0600" + map[bool]string{true: ", encrypted", false: ""}[encrypted] + ")"
		desc[d.IntermediateCert()] = "issuing CA " + safe(in.Subject.CommonName) + ", until " + pkiDay(in.NotAfter) + pkiConstraintNote(in)
		desc[d.Intermediates()] = "the intermediates in service, for servers to load their CRLs"
		desc[d.CRL()] = fmt.Sprintf("signed CRLs, empty: the intermediate's until %s ('kvsctl pki crl' re-signs it), the root's until %s",
			pkiDay(res.CRL.NextUpdate), pkiDay(res.RootCRL.NextUpdate))
		desc[d.ServerCert()] += " (then the intermediate)"
		desc[d.ClientCert()] += " (then the intermediate)"
	}
	if res.Mode == pki.ModeSelfSigned {
		desc[d.ServerCert()] = "self-signed server certificate for " + pkiCertSANs(res.Server) + ", until " + pkiDay(res.Server.NotAfter) + " (the client trusts exactly this)"
		desc[d.ClientCert()] = "self-signed client certificate CN=" + safe(res.Client.Subject.CommonName) + ", until " + pkiDay(res.Client.NotAfter) + " (the server trusts exactly this)"
		fmt.Fprintf(w, "Created a self-signed PKI in %s (%s keys):\n", string(d), kt)
	} else if res.Intermediate != nil {
		fmt.Fprintf(w, "Created a root CA, an issuing intermediate and their certificates in %s (%s keys):\n", string(d), kt)
	} else {
		fmt.Fprintf(w, "Created a CA and its certificates in %s (%s keys):\n", string(d), kt)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range res.Files {
		fmt.Fprintf(tw, "  %s\t%s\n", f, desc[f])
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Start the server and store a value:")
	if string(d) != "certs" {
		fmt.Fprintf(w, "  export KVS_CERTS=%s\n", string(d))
	}
	fmt.Fprintln(w, "  kvsctl serve &")
	fmt.Fprintln(w, "  kvsctl put hello world")
	fmt.Fprintln(w, "  kvsctl get hello")
	if res.Intermediate != nil {
		fmt.Fprintln(w, "Then take the root key offline: kvsctl pki root export /media/safe/kvsctl-root.key")
	}
}

// pkiConstraintNote describes the name constraints of a CA for init's
// output.
func pkiConstraintNote(c *x509.Certificate) string {
	nc := pki.ConstraintsOf(c).Strings()
	if len(nc) == 0 {
		return ""
	}
	return ", only for " + safe(strings.Join(nc, ", "))
}

func pkiPrintIssued(c *cli.Context, verb string, iss *pki.Issued) error {
	if c.Bool("json") {
		return pkiJSON(c.App.Writer, struct {
			pki.Record
			CertFile string `json:"cert_file"`
			KeyFile  string `json:"key_file,omitempty"`
		}{iss.Record, iss.CertFile, iss.KeyFile})
	}
	w := c.App.Writer
	cert := iss.Cert
	fmt.Fprintf(w, "%s %s certificate %q, serial %s, valid until %s (%s)\n",
		verb, safe(iss.Record.Kind), iss.Record.Name, iss.Record.Serial, pkiStamp(cert.NotAfter), pki.HumanDuration(time.Until(cert.NotAfter)))
	fmt.Fprintf(w, "  subject  %s\n", safe(cert.Subject.String()))
	if sans := pkiCertSANs(cert); sans != "" {
		fmt.Fprintf(w, "  SANs     %s\n", sans)
	}
	if iss.KeyFile != "" {
		fmt.Fprintf(w, "  wrote    %s (0600)\n", iss.KeyFile)
	}
	fmt.Fprintf(w, "  wrote    %s\n", iss.CertFile)
	return nil
}

func pkiPrintRenewed(c *cli.Context, r *pki.Renewed) error {
	if c.Bool("json") {
		// The SANs as the inventory records them (hosts, emails, uris),
		// also in self-signed mode, which has no inventory.
		rec := pki.NewRecord("", "", "", r.New, nil)
		out := struct {
			CertFile  string    `json:"cert_file"`
			KeyFile   string    `json:"key_file,omitempty"`
			OldSerial string    `json:"old_serial"`
			NewSerial string    `json:"new_serial"`
			Subject   string    `json:"subject"`
			Hosts     []string  `json:"hosts,omitempty"`
			Emails    []string  `json:"emails,omitempty"`
			URIs      []string  `json:"uris,omitempty"`
			NotAfter  time.Time `json:"not_after"`
			Revoked   bool      `json:"old_revoked"`
		}{r.CertFile, r.KeyFile, pki.SerialHex(r.Old), pki.SerialHex(r.New), rec.Subject, rec.Hosts, rec.Emails, rec.URIs, r.New.NotAfter.UTC(), r.CRL != nil}
		return pkiJSON(c.App.Writer, out)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "renewed %s (%s): serial %s -> %s, valid until %s (%s)\n", r.CertFile, r.Profile,
		pki.SerialHex(r.Old), pki.SerialHex(r.New), pkiStamp(r.New.NotAfter), pki.HumanDuration(time.Until(r.New.NotAfter)))
	fmt.Fprintf(w, "  subject %s\n", safe(r.New.Subject.String()))
	if sans := pkiCertSANs(r.New); sans != "" {
		fmt.Fprintf(w, "  SANs    %s\n", sans)
	}
	if r.KeyFile != "" {
		fmt.Fprintf(w, "  wrote %s (new %s key, 0600)\n", r.KeyFile, r.KeyType)
	} else {
		fmt.Fprintln(w, "  kept the old key")
	}
	fmt.Fprintf(w, "  wrote %s\n", r.CertFile)
	if r.CRL != nil {
		fmt.Fprintf(w, "  revoked the old certificate (superseded); CRL number %s valid until %s\n", r.CRL.Number, pkiStamp(r.CRL.NextUpdate))
	}
	return nil
}

func pkiPrintInspection(w io.Writer, file string, ins *pki.Inspection) {
	total := len(ins.Certificates) + len(ins.CSRs) + len(ins.CRLs)
	n := 0
	head := func(kind string) {
		n++
		if n > 1 {
			fmt.Fprintln(w)
		}
		if total > 1 {
			fmt.Fprintf(w, "%s: %s (%d of %d)\n", file, kind, n, total)
		} else {
			fmt.Fprintf(w, "%s: %s\n", file, kind)
		}
	}
	for _, c := range ins.Certificates {
		head("certificate")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		line := pkiLine(tw)
		line("Subject:", c.Subject)
		line("Issuer:", c.Issuer)
		line("Serial:", c.Serial)
		line("Valid from:", pkiStamp(c.NotBefore))
		line("Valid until:", fmt.Sprintf("%s (%s, %s)", pkiStamp(c.NotAfter), c.Status, pkiTimeLeft(c.TimeLeft, c.Status)))
		line("SANs:", pkiSANs(c.DNSNames, c.IPAddresses, c.Emails, c.URIs))
		line("Key:", pkiKeyDesc(c.KeyAlgorithm, c.KeySize, c.KeyCurve))
		line("Signature:", c.SignatureAlgorithm)
		line("Key usage:", strings.Join(c.KeyUsage, ", "))
		line("Ext key usage:", strings.Join(c.ExtKeyUsage, ", "))
		ca := "no"
		if c.IsCA {
			ca = "yes, no path length limit"
			if c.MaxPathLen != nil {
				ca = fmt.Sprintf("yes, path length %d", *c.MaxPathLen)
			}
		}
		line("CA:", ca)
		nc := strings.Join(c.NameConstraints, ", ")
		if nc != "" && c.NameConstraintsCritical {
			nc += " (critical)"
		}
		line("Name constraints:", nc)
		line("Self-signed:", pkiYesNo(c.SelfSigned))
		line("Subject key ID:", c.SubjectKeyID)
		line("Authority key ID:", c.AuthorityKeyID)
		line("CRL distribution:", strings.Join(c.CRLDistributionPoints, ", "))
		line("SHA-256:", c.SHA256)
		tw.Flush()
	}
	for _, c := range ins.CSRs {
		head("certificate request")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		line := pkiLine(tw)
		line("Subject:", c.Subject)
		line("SANs:", pkiSANs(c.DNSNames, c.IPAddresses, c.Emails, c.URIs))
		line("Key:", pkiKeyDesc(c.KeyAlgorithm, c.KeySize, c.KeyCurve))
		sig := "valid"
		if !c.SignatureValid {
			sig = "INVALID (pki sign refuses this CSR)"
		}
		line("Signature:", c.SignatureAlgorithm+", "+sig)
		if len(c.RequestedExtensions) > 0 {
			line("Requests:", strings.Join(c.RequestedExtensions, ", "))
			line("", "(pki sign copies only the subject and the SANs)")
		}
		line("SHA-256:", c.SHA256)
		tw.Flush()
	}
	for _, c := range ins.CRLs {
		head("CRL")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		line := pkiLine(tw)
		line("Issuer:", c.Issuer)
		line("CRL number:", c.Number)
		line("This update:", pkiStamp(c.ThisUpdate))
		line("Next update:", fmt.Sprintf("%s (%s, %s)", pkiStamp(c.NextUpdate), c.Status, pkiTimeLeft(c.TimeLeft, c.Status)))
		line("Signature:", c.SignatureAlgorithm)
		line("Authority key ID:", c.AuthorityKeyID)
		line("Revoked:", fmt.Sprint(len(c.Revoked)))
		for _, r := range c.Revoked {
			line("", fmt.Sprintf("%s  %s  %s", r.Serial, pkiStamp(r.RevokedAt), r.Reason))
		}
		line("SHA-256:", c.SHA256)
		tw.Flush()
	}
	if len(ins.Skipped) > 0 {
		fmt.Fprintf(w, "\nskipped: %s (never shown)\n", strings.Join(ins.Skipped, ", "))
	}
}

// pkiLine returns a printer of "  Key:<tab>value" lines to tw that skips an
// empty value and shows every value through safe: what inspect prints comes
// from the file inspected.
func pkiLine(tw io.Writer) func(k, v string) {
	return func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", k, safe(v))
		}
	}
}

func pkiTimeLeft(s, status string) string {
	if status == "valid" || status == "current" {
		return s + " left"
	}
	return s
}

func pkiKeyDesc(alg string, size int, curve string) string {
	switch {
	case curve != "":
		return fmt.Sprintf("%s %s (%d bits)", alg, curve, size)
	case size > 0:
		return fmt.Sprintf("%s %d bits", alg, size)
	}
	return alg
}

func pkiYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func pkiPrintVerify(w io.Writer, file string, r *pki.VerifyReport) {
	fmt.Fprintf(w, "%s: %s, serial %s\n", file, safe(r.Subject), r.Serial)
	if len(r.SANs) > 0 {
		sans := make([]string, len(r.SANs))
		for i, s := range r.SANs {
			sans[i] = safe(s)
		}
		fmt.Fprintf(w, "  SANs: %s\n", strings.Join(sans, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", strings.ToUpper(c.Result), c.Name, safeText(c.Detail))
	}
	tw.Flush()
	if r.OK {
		fmt.Fprintln(w, "all checks passed")
	}
}

func pkiPrintList(w io.Writer, l *pki.Listing) {
	if l.Mode == pki.ModeSelfSigned.String() {
		fmt.Fprintln(w, "self-signed mode: no CA, no inventory, no CRL; the two certificates:")
	}
	names := map[string]string{}
	for _, c := range l.Certificates {
		names[c.Serial] = c.Name
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSERIAL\tISSUER\tNOT AFTER\tSTATUS\tSANS")
	for _, c := range l.Certificates {
		status := c.Status
		if c.Status == "revoked" && c.Reason != "" {
			status += " (" + c.Reason + ")"
		} else if c.ReplacedBy != "" {
			status += " (renewed)"
		}
		sans := pkiRecordSANs(c.Record)
		if sans == "" {
			sans = "-"
		}
		issuer := "-"
		if c.Issuer != "" {
			issuer = safe(names[c.Issuer])
			if issuer == "" {
				issuer = "serial " + safe(pkiShortSerial(c.Issuer))
			}
		}
		name := strings.Repeat("  ", c.Depth) + safe(c.Name)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, safe(c.Kind), safe(c.Serial), issuer, pkiDay(c.NotAfter), safe(status), sans)
	}
	tw.Flush()
	if len(l.CRLs) > 0 {
		fmt.Fprintln(w)
	}
	for _, st := range l.CRLs {
		who := safe(st.Issuer)
		if st.Number == "" {
			fmt.Fprintf(w, "CRL of %s: %s\n", who, safeText(st.Warning))
			continue
		}
		fmt.Fprintf(w, "CRL of %s: number %s, %d revoked, next update %s (%s)\n", who, st.Number, st.Revoked,
			pkiStamp(st.NextUpdate), pkiCRLLeft(st.NextUpdate))
		if st.Warning != "" {
			fmt.Fprintf(w, "  warning: %s\n", safeText(st.Warning))
		}
	}
}

// pkiShortSerial shortens a serial for a table column.
func pkiShortSerial(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}

func pkiCRLLeft(t time.Time) string {
	left := time.Until(t)
	if left < 0 {
		return "EXPIRED " + pki.HumanDuration(left) + " ago"
	}
	return "in " + pki.HumanDuration(left)
}

func pkiPrintExported(w io.Writer, ex *pki.Exported) {
	if ex.HasKey {
		fmt.Fprintf(w, "wrote %s (0600): certificate %s, its private key", ex.File, safe(ex.Cert.Subject.String()))
		for i, ca := range ex.Chain {
			sep := " and"
			if i > 0 {
				sep = ","
			}
			fmt.Fprintf(w, "%s the CA %s", sep, safe(ca.Subject.String()))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "wrote %s (0600): trust store with the CA %s\n", ex.File, safe(ex.Cert.Subject.String()))
	}
	fmt.Fprintf(w, "  encryption: %s; check it with: openssl pkcs12 -info -noout -in %s\n", ex.Encoding, ex.File)
}

func pkiPrintTrust(w io.Writer, r *pki.TrustResult) {
	fmt.Fprintf(w, "CA %s (SHA-256 %s)\n", safe(r.Cert.Subject.String()), pki.Fingerprint(r.Cert.Raw))
	for _, c := range r.Changes {
		fmt.Fprintf(w, "  %s %s: %s\n", c.Action, c.Store, safeText(c.Detail))
	}
}
