package pki

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
)

// Settings are the CA's options kept in settings.json: what every new
// certificate gets.
type Settings struct {
	// CRLURL is the base URL of the CRL distribution point: every
	// certificate a CA of the directory signs from then on names
	// CRLURL/SERIAL, SERIAL being its issuer's (what 'pki serve' serves
	// at /v1/pki/crl/SERIAL).
	CRLURL string `json:"crl_url,omitempty"`
}

// SettingsFile is the path of settings.json.
func (d Dir) SettingsFile() string { return d.Path("settings.json") }

// LoadSettings reads settings.json; a missing file is the zero Settings.
func (d Dir) LoadSettings() (Settings, error) {
	var s Settings
	data, err := os.ReadFile(d.SettingsFile())
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read settings: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("read settings %s: %w", d.SettingsFile(), err)
	}
	return s, nil
}

// SaveSettings checks and writes settings.json, under the directory lock.
func (d Dir) SaveSettings(s Settings) error {
	if err := CheckCRLURL(s.CRLURL); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode settings: %w", err)
	}
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return WriteFileAtomic(d.SettingsFile(), append(data, '\n'), CertMode, true)
}

// CheckCRLURL accepts "" (no distribution point) or an absolute http or
// https URL without a query or fragment.
func CheckCRLURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid CRL URL %q: use http://HOST:PORT/v1/pki/crl, the base that 'pki serve --crl-listen' serves", s)
	}
	return nil
}

// crlPoint is the distribution point of the CRL of the CA c under base.
func crlPoint(base string, c *x509.Certificate) string {
	return strings.TrimSuffix(base, "/") + "/" + SerialHex(c)
}
