package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RootKeyOptions configures [ExportRootKey] and [ImportRootKey].
type RootKeyOptions struct {
	Dir  Dir
	File string // where the key goes (export) or comes from (import)
	// Passphrase decrypts an encrypted key, to check that it is the root's.
	Passphrase []byte
	Force      bool // export: replace File; import: replace ca.key
}

// RootKeyMoved says what [ExportRootKey] or [ImportRootKey] did.
type RootKeyMoved struct {
	Root      *x509.Certificate
	From, To  string
	Encrypted bool // the key file is encrypted with a passphrase
}

// ExportRootKey takes the root key of a hierarchy offline: it copies ca.key
// to File (0600, synced), checks that the copy reads back as the root's
// key, and only then removes ca.key. Every command but those that sign an
// intermediate or the root's CRL works without it. A flat PKI is refused:
// its CA signs every leaf. The key is copied as it is, encrypted or not.
func ExportRootKey(ctx context.Context, o RootKeyOptions) (*RootKeyMoved, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.File == "" {
		return nil, errors.New("no file to export the root key to")
	}
	unlock, err := o.Dir.tryLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return nil, err
	}
	if !a.hierarchy() {
		return nil, fmt.Errorf("%s is a flat PKI: its CA signs every leaf and CRL, so its key cannot go offline (a root rotation makes a hierarchy)", string(o.Dir))
	}
	if inside(string(o.Dir), o.File) {
		return nil, fmt.Errorf("%s is inside %s: an offline root key belongs on another medium", o.File, string(o.Dir))
	}
	src := o.Dir.CAKey()
	root := a.currentRoot()
	if !exists(src) {
		return nil, errorOf(ErrRootOffline, "the root CA key %s is not here: it is offline already", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	encrypted, err := checkRootKey(data, o.Passphrase, root, src)
	if err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(o.File, data, KeyMode, o.Force); err != nil {
		return nil, err
	}
	back, err := os.ReadFile(o.File)
	if err != nil || string(back) != string(data) {
		return nil, fmt.Errorf("the copy %s does not read back as written (%v): %s is kept", o.File, err, src)
	}
	if err := os.Remove(src); err != nil {
		return nil, fmt.Errorf("the root key is copied to %s, but %s could not be removed: %w", o.File, src, err)
	}
	return &RootKeyMoved{Root: root, From: src, To: o.File, Encrypted: encrypted}, nil
}

// ImportRootKey brings an offline root key back as ca.key, after checking
// that it is the key of the current root.
func ImportRootKey(ctx context.Context, o RootKeyOptions) (*RootKeyMoved, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock, err := o.Dir.tryLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := CheckKeyPerm(o.File); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(o.File)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", o.File, err)
	}
	root := a.currentRoot()
	encrypted, err := checkRootKey(data, o.Passphrase, root, o.File)
	if err != nil {
		return nil, err
	}
	dst := o.Dir.CAKey()
	if err := WriteFileAtomic(dst, data, KeyMode, o.Force); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s already exists: the root key is here", dst)
		}
		return nil, err
	}
	return &RootKeyMoved{Root: root, From: o.File, To: dst, Encrypted: encrypted}, nil
}

// checkRootKey parses a key file's content and checks that it is root's
// key; an encrypted key needs its passphrase for that.
func checkRootKey(data, passphrase []byte, root *x509.Certificate, file string) (bool, error) {
	encrypted := strings.Contains(string(data), "ENCRYPTED PRIVATE KEY")
	key, err := ParseKey(data, passphrase)
	if err != nil {
		return encrypted, fmt.Errorf("read key %s: %w", file, err)
	}
	if !KeyMatches(root, key) {
		return encrypted, fmt.Errorf("%s is not the key of the current root %s", file, root.Subject)
	}
	return encrypted, nil
}

// inside reports whether path lies in dir.
func inside(dir, path string) bool {
	ad, err1 := filepath.Abs(dir)
	ap, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(ad, ap)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
