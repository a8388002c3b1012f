package kvs_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kvsctl/kvsctl/kvs"
)

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		reason    string // "" means valid
	}{
		{"simple", "a", ""},
		{"path-like", "a/../../b", ""},
		{"SQL", "'; DROP TABLE kv; --", ""},
		{"percent", "%2F", ""},
		{"unicode", "日本語/😀", ""},
		{"control chars", "\x01\t\n\x7f", ""},
		{"max length", strings.Repeat("k", kvs.MaxKeyLen), ""},
		{"max length multibyte", strings.Repeat("é", kvs.MaxKeyLen/2), ""},
		{"U+10FFFF", "\U0010FFFF", ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("k", kvs.MaxKeyLen+1), "1025 bytes"},
		{"NUL", "a\x00", "NUL byte at offset 1"},
		{"only NUL", "\x00", "NUL byte at offset 0"},
		{"bad byte", "ab\xff", "invalid UTF-8 at offset 2"},
		{"truncated rune", "日"[:2], "invalid UTF-8 at offset 0"},
		{"surrogate", "\xed\xa0\x80", "invalid UTF-8"},
		{"overlong slash", "\xc0\xaf", "invalid UTF-8"},
	} {
		err := kvs.ValidateKey(tc.key)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: ValidateKey = %v, want nil", tc.name, err)
		case tc.reason != "" && (!errors.Is(err, kvs.ErrInvalidKey) || !strings.Contains(err.Error(), tc.reason)):
			t.Errorf("%s: ValidateKey = %v, want ErrInvalidKey saying %q", tc.name, err, tc.reason)
		}
	}
}

func TestValidateKeyAllocs(t *testing.T) {
	key := "users/日本語/" + strings.Repeat("x", 200)
	if n := testing.AllocsPerRun(100, func() {
		if kvs.ValidateKey(key) != nil {
			t.Fatal("invalid")
		}
	}); n != 0 {
		t.Errorf("ValidateKey allocates %v times for a valid key, want 0", n)
	}
}

// FuzzValidateKey checks ValidateKey against its specification, written
// independently with the standard library.
func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"a", "", "a\x00b", "\xff", "日本語", "../x", strings.Repeat("k", 1025)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		want := len(key) >= 1 && len(key) <= kvs.MaxKeyLen && utf8.ValidString(key) && !strings.Contains(key, "\x00")
		err := kvs.ValidateKey(key)
		if (err == nil) != want {
			t.Fatalf("ValidateKey(%q) = %v, want valid=%v", key, err, want)
		}
		if err != nil && !errors.Is(err, kvs.ErrInvalidKey) {
			t.Fatalf("ValidateKey(%q) = %v, does not wrap ErrInvalidKey", key, err)
		}
	})
}

func BenchmarkValidateKey(b *testing.B) {
	for _, bc := range []struct{ name, key string }{
		{"ascii32", "users/alice/settings/theme.json"},
		{"ascii1024", strings.Repeat("k", kvs.MaxKeyLen)},
		{"unicode", "ユーザー/日本語/設定/😀"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.key)))
			b.ReportAllocs()
			for b.Loop() {
				if err := kvs.ValidateKey(bc.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
