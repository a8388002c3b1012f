package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File modes used for everything the PKI writes.
const (
	DirMode  fs.FileMode = 0o700
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
)

// WriteFileAtomic writes data to path through a temporary file in the same
// directory that is synced and renamed into place, so readers and crashes see
// the old file or the new one, never a mix. With overwrite false an existing
// file is an error wrapping fs.ErrExist.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode, overwrite bool) error {
	dir := filepath.Dir(path)
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s already exists: %w", path, fs.ErrExist)
		}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// pendingFile is one file of a multi-file write.
type pendingFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// writeAll writes every file atomically; when one fails it removes the ones
// this call already created, so the caller sees all files or none of the new
// ones. Files it replaced (overwrite) cannot be restored and are listed in the
// error.
func writeAll(files []pendingFile, overwrite bool) error {
	if !overwrite {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return fmt.Errorf("%s already exists: %w", f.path, fs.ErrExist)
			}
		}
	}
	var done []string
	for _, f := range files {
		if err := WriteFileAtomic(f.path, f.data, f.mode, overwrite); err != nil {
			if !overwrite {
				for _, p := range done {
					os.Remove(p)
				}
			}
			return err
		}
		done = append(done, f.path)
	}
	return nil
}

// ensureDir creates dir with mode 0700 if it does not exist, checks that it
// is a directory this process can write, and takes group and other access
// away from an existing one (git creates certs/ 0755 on checkout, before any
// key is written into it).
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("restrict directory %s to its owner: %w", dir, err)
		}
	}
	return nil
}

// PEMCert encodes a DER certificate as PEM.
func PEMCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseCerts decodes every certificate in data, which may be PEM (one or more
// CERTIFICATE blocks) or a single DER certificate.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if !sawPEM {
		if bytes.Contains(data, []byte("-----BEGIN ")) {
			return nil, errors.New("corrupt PEM: no block between -----BEGIN and -----END decodes")
		}
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("not a PEM or DER certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block found")
	}
	return certs, nil
}

// LoadCert reads the first certificate of a PEM or DER file.
func LoadCert(path string) (*x509.Certificate, error) {
	certs, err := LoadCerts(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// LoadCerts reads every certificate of a PEM or DER file.
func LoadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", path, err)
	}
	certs, err := ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", path, err)
	}
	return certs, nil
}

// replaceFiles writes every file atomically, overwriting, in order. When one
// write fails it puts back the previous content of the files it already
// replaced (and removes the ones that did not exist), so a failure leaves the
// set as it was. A crash in the middle can still leave some files new and some
// old, each of them whole.
func replaceFiles(files []pendingFile) error {
	type previous struct {
		path   string
		data   []byte
		mode   fs.FileMode
		absent bool
	}
	var done []previous
	for _, f := range files {
		p := previous{path: f.path}
		if fi, err := os.Stat(f.path); err == nil {
			data, err := os.ReadFile(f.path)
			if err != nil {
				return fmt.Errorf("read %s: %w", f.path, err)
			}
			p.data, p.mode = data, fi.Mode().Perm()
		} else if errors.Is(err, fs.ErrNotExist) {
			p.absent = true
		} else {
			return fmt.Errorf("stat %s: %w", f.path, err)
		}
		if err := WriteFileAtomic(f.path, f.data, f.mode, true); err != nil {
			for i := len(done) - 1; i >= 0; i-- {
				if done[i].absent {
					os.Remove(done[i].path)
				} else {
					WriteFileAtomic(done[i].path, done[i].data, done[i].mode, true)
				}
			}
			return err
		}
		done = append(done, p)
	}
	return nil
}

// File is one file of [WriteFiles].
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// WriteFiles writes every file atomically, replacing existing ones, in
// order; when one write fails it puts back what the earlier ones replaced,
// so the set is written whole or not at all.
func WriteFiles(files []File) error {
	pending := make([]pendingFile, len(files))
	for i, f := range files {
		pending[i] = pendingFile{f.Path, f.Data, f.Mode}
	}
	return replaceFiles(pending)
}
