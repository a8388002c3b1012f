package kvs

import (
	"fmt"
	"unicode/utf8"
)

// MaxKeyLen is the longest key, in bytes, that ValidateKey accepts.
const MaxKeyLen = 1024

// ValidateKey reports whether key can be stored: 1 to MaxKeyLen bytes of
// valid UTF-8 without NUL bytes. Any other byte sequence is accepted as is;
// "/" and ".." have no special meaning. On failure the error wraps
// ErrInvalidKey and says why. It does not allocate when key is valid.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	return ValidateKeyPart(key)
}

// ValidateKeyPart is ValidateKey for strings that may be empty: List
// prefixes and cursors, which compare against keys and so obey the same
// rules.
func ValidateKeyPart(s string) error {
	if len(s) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidKey, len(s), MaxKeyLen)
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b != 0 && b < utf8.RuneSelf {
			i++
			continue
		}
		if b == 0 {
			return fmt.Errorf("%w: NUL byte at offset %d", ErrInvalidKey, i)
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("%w: invalid UTF-8 at offset %d", ErrInvalidKey, i)
		}
		i += size
	}
	return nil
}

// CheckList validates the prefix and cursor of a List call.
func CheckList(prefix, after string) error {
	if err := ValidateKeyPart(prefix); err != nil {
		return fmt.Errorf("list prefix: %w", err)
	}
	if err := ValidateKeyPart(after); err != nil {
		return fmt.Errorf("list cursor: %w", err)
	}
	return nil
}
