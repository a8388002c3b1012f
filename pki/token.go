package pki

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// Token limits.
const (
	DefaultTokenTTL = 10 * time.Minute
	MaxTokenTTL     = 7 * 24 * time.Hour
	tokenPrefix     = "kvs1."
)

// Errors of tokens. Each matches ErrBadToken too.
var (
	// ErrBadToken is wrapped by every refusal of a token.
	ErrBadToken = errors.New("pki: token refused")
	// ErrTokenUsed means the token was redeemed before: tokens are single-use.
	ErrTokenUsed = errors.New("pki: token already used")
	// ErrTokenExpired means the token's time ran out before it was used.
	ErrTokenExpired = errors.New("pki: token expired")
	// ErrTokenMismatch means a CSR asks for more than its token allows.
	ErrTokenMismatch = errors.New("pki: CSR does not match its token")
)

// TokenRecord is what the CA keeps of an enrollment token: its hash, never
// the token, and what it allows.
type TokenRecord struct {
	Hash    string    `json:"sha256"` // hex SHA-256 of the token
	Name    string    `json:"name"`   // the common name (and file name) it enrolls
	Profile Profile   `json:"profile"`
	Hosts   []string  `json:"hosts,omitempty"`  // the DNS and IP SANs it allows
	Emails  []string  `json:"emails,omitempty"` // the e-mail SANs it allows
	URIs    []string  `json:"uris,omitempty"`   // the URI SANs it allows
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// UsedAt is when it was redeemed, with the serial it produced.
	UsedAt *time.Time `json:"used_at,omitempty"`
	Serial string     `json:"serial,omitempty"`
}

// tokenFile is tokens.json: every token not yet pruned.
type tokenFile struct {
	Tokens []TokenRecord `json:"tokens"`
}

// Tokens is the path of the enrollment tokens file.
func (d Dir) Tokens() string { return d.Path("tokens.json") }

// TokenOptions configures [NewToken].
type TokenOptions struct {
	Dir     Dir
	Name    string
	Profile Profile
	Hosts   []string
	Emails  []string
	URIs    []string
	TTL     time.Duration // how long the token may be used; 0 means DefaultTokenTTL
	Now     time.Time
}

// NewToken creates a random single-use enrollment token bound to a name,
// a profile and the SANs it may carry, and records its SHA-256 hash and
// expiry in tokens.json (0600). The token itself is returned once and
// stored nowhere. The name and SANs are checked against the issuing CA's
// name constraints now, so a token that could never be redeemed is not
// handed out.
func NewToken(ctx context.Context, o TokenOptions) (string, *TokenRecord, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if err := CheckName(o.Name); err != nil {
		return "", nil, err
	}
	if _, err := ParseProfile(string(o.Profile)); err != nil {
		return "", nil, err
	}
	if o.TTL == 0 {
		o.TTL = DefaultTokenTTL
	}
	if o.TTL < time.Minute || o.TTL > MaxTokenTTL {
		return "", nil, fmt.Errorf("a token lifetime of %s: use 1m to %s", o.TTL, HumanDuration(MaxTokenTTL))
	}
	if o.Profile == ProfileServer && len(o.Hosts) == 0 {
		o.Hosts = []string{o.Name}
	}
	sans, err := LeafRequest{Hosts: o.Hosts, Emails: o.Emails, URIs: o.URIs}.sans()
	if err != nil {
		return "", nil, err
	}
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return "", nil, err
	}
	if err := checkNames(sans, a.chainOf(a.issuing)); err != nil {
		return "", nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, fmt.Errorf("generate token: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	rec := TokenRecord{
		Hash: tokenHash(token), Name: o.Name, Profile: o.Profile, Hosts: o.Hosts, Emails: o.Emails, URIs: o.URIs,
		Created: o.Now.UTC().Truncate(time.Second), Expires: o.Now.Add(o.TTL).UTC().Truncate(time.Second),
	}
	unlock, err := o.Dir.lock()
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	f, err := o.Dir.loadTokens()
	if err != nil {
		return "", nil, err
	}
	f.prune(o.Now)
	f.Tokens = append(f.Tokens, rec)
	if err := o.Dir.writeTokens(f); err != nil {
		return "", nil, err
	}
	return token, &rec, nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// loadTokens reads tokens.json; a missing file has no tokens.
func (d Dir) loadTokens() (*tokenFile, error) {
	data, err := os.ReadFile(d.Tokens())
	if errors.Is(err, fs.ErrNotExist) {
		return &tokenFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	var f tokenFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read tokens %s: %w", d.Tokens(), err)
	}
	return &f, nil
}

func (d Dir) writeTokens(f *tokenFile) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode tokens: %w", err)
	}
	return WriteFileAtomic(d.Tokens(), append(data, '\n'), KeyMode, true)
}

// prune drops tokens that expired or were used more than a day ago.
func (f *tokenFile) prune(now time.Time) {
	f.Tokens = slices.DeleteFunc(f.Tokens, func(t TokenRecord) bool {
		end := t.Expires
		if t.UsedAt != nil {
			end = *t.UsedAt
		}
		return now.Sub(end) > 24*time.Hour
	})
}

// redeem finds the token, checks it is unused and current, and marks it
// used. The caller holds the lock and writes the file.
func (f *tokenFile) redeem(token string, now time.Time) (*TokenRecord, error) {
	if !strings.HasPrefix(token, tokenPrefix) {
		return nil, errorOfAll([]error{ErrBadToken}, "not an enrollment token: it starts with %q", tokenPrefix)
	}
	h := tokenHash(token)
	for i := range f.Tokens {
		t := &f.Tokens[i]
		if t.Hash != h {
			continue
		}
		if t.UsedAt != nil {
			return nil, errorOfAll([]error{ErrBadToken, ErrTokenUsed}, "the token for %q was used at %s (serial %s): a token is good for one certificate", t.Name, stamp(*t.UsedAt), t.Serial)
		}
		if !now.Before(t.Expires) {
			return nil, errorOfAll([]error{ErrBadToken, ErrTokenExpired}, "the token for %q expired at %s", t.Name, stamp(t.Expires))
		}
		u := now.UTC().Truncate(time.Second)
		t.UsedAt = &u
		return t, nil
	}
	return nil, errorOf(ErrBadToken, "unknown token")
}
