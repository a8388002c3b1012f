package kvstest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
)

func testList(t *testing.T, s kvs.Store) {
	ctx := t.Context()
	stored := []string{"a", "a/1", "a/2", "a/3", "ab", "b", "b/1", "c"}
	versions := map[string]int64{}
	for _, k := range stored {
		versions[k] = mustPut(t, s, k, []byte("v-"+k), kvs.Cond{})
	}
	for _, tc := range []struct {
		name          string
		prefix, after string
		limit         int
		want          []string
		next          string
	}{
		{"all", "", "", 100, stored, ""},
		{"limit", "", "", 3, []string{"a", "a/1", "a/2"}, "a/2"},
		{"exact fit", "", "", len(stored), stored, ""},
		{"default limit", "", "", 0, stored, ""},
		{"negative limit", "", "", -5, stored, ""},
		{"prefix", "a/", "", 100, []string{"a/1", "a/2", "a/3"}, ""},
		{"prefix includes itself", "a", "", 100, []string{"a", "a/1", "a/2", "a/3", "ab"}, ""},
		{"prefix limit", "a/", "", 2, []string{"a/1", "a/2"}, "a/2"},
		{"after", "", "a/3", 100, []string{"ab", "b", "b/1", "c"}, ""},
		{"after is exclusive", "", "b", 100, []string{"b/1", "c"}, ""},
		{"after a missing key", "", "a/25", 100, []string{"a/3", "ab", "b", "b/1", "c"}, ""},
		{"prefix and after", "a/", "a/1", 100, []string{"a/2", "a/3"}, ""},
		{"after before prefix", "b", "a", 100, []string{"b", "b/1"}, ""},
		{"after past prefix", "a/", "b", 100, nil, ""},
		{"after the last key", "", "c", 100, nil, ""},
		{"no match", "zzz", "", 100, nil, ""},
		{"prefix longer than keys", "a/1/x", "", 100, nil, ""},
	} {
		keys, next, err := s.List(ctx, tc.prefix, tc.after, tc.limit)
		if err != nil {
			t.Errorf("%s: List(%q, %q, %d): %v", tc.name, tc.prefix, tc.after, tc.limit, err)
			continue
		}
		if got := keyNames(keys); !slices.Equal(got, tc.want) || next != tc.next {
			t.Errorf("%s: List(%q, %q, %d) = %q next %q, want %q next %q",
				tc.name, tc.prefix, tc.after, tc.limit, got, next, tc.want, tc.next)
		}
		if keys == nil {
			t.Errorf("%s: List returned a nil slice, want empty", tc.name)
		}
		for _, ki := range keys {
			if ki.Version != versions[ki.Key] || ki.Size != len("v-"+ki.Key) || ki.Updated.IsZero() {
				t.Errorf("%s: List entry %+v, want version %d size %d", tc.name, ki, versions[ki.Key], len("v-"+ki.Key))
			}
		}
	}
}

// testListPatternChars checks that prefixes are matched literally, not as
// LIKE or glob patterns.
func testListPatternChars(t *testing.T, s kvs.Store) {
	stored := []string{"50%", "50%off", "500", "50x", "a_b", "a_c", "aXb", `a\b`, `a\\b`, `a\%`, "a*", "ab", "[a]", "a.b"}
	for _, k := range stored {
		mustPut(t, s, k, []byte("x"), kvs.Cond{})
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"50%", []string{"50%", "50%off"}},
		{"a_", []string{"a_b", "a_c"}},
		{"a_b", []string{"a_b"}},
		{`a\`, []string{`a\%`, `a\\b`, `a\b`}},
		{`a\\`, []string{`a\\b`}},
		{`a\%`, []string{`a\%`}},
		{"a*", []string{"a*"}},
		{"[", []string{"[a]"}},
		{"a.", []string{"a.b"}},
		{"%", nil},
		{"_", nil},
	} {
		if got := keyNames(listAll(t, s, tc.prefix, 2)); !slices.Equal(got, tc.want) {
			t.Errorf("List(prefix %q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// testListUnicodePrefix checks prefix matching at code point boundaries,
// where a store that computes a range end from the prefix can go wrong.
func testListUnicodePrefix(t *testing.T, s kvs.Store) {
	stored := []string{
		"日", "日本", "日本語", "旦", // 旦 is U+65E6, right after 日 U+65E5
		"😀", "😀x", "😁",
		"\uD7FF", "\uD7FFa", "\uE000",
		"\U0010FFFF", "\U0010FFFFa", "\U0010FFFF\U0010FFFF",
		"z\U0010FFFF", "{",
		"\u007f", "\u007fa", "\u0080",
	}
	for _, k := range stored {
		mustPut(t, s, k, []byte("x"), kvs.Cond{})
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"日", []string{"日", "日本", "日本語"}},
		{"日本", []string{"日本", "日本語"}},
		{"😀", []string{"😀", "😀x"}},
		{"\uD7FF", []string{"\uD7FF", "\uD7FFa"}},
		{"\U0010FFFF", []string{"\U0010FFFF", "\U0010FFFFa", "\U0010FFFF\U0010FFFF"}},
		{"z\U0010FFFF", []string{"z\U0010FFFF"}},
		{"z", []string{"z\U0010FFFF"}},
		{"\u007f", []string{"\u007f", "\u007fa"}},
	} {
		if got := keyNames(listAll(t, s, tc.prefix, 2)); !slices.Equal(got, tc.want) {
			t.Errorf("List(prefix %q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// testListPaging pages through more keys than one page holds.
func testListPaging(t *testing.T, s kvs.Store) {
	const n, page = 2500, 1000
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("page/%05d", (i*7919)%n) // stored out of order
	}
	parallel(t, 8, n, func(i int) error {
		_, err := s.Put(t.Context(), want[i], []byte{byte(i)}, kvs.Cond{})
		return err
	})
	mustPut(t, s, "pagf", []byte("after the prefix"), kvs.Cond{})
	mustPut(t, s, "pag", []byte("before the prefix"), kvs.Cond{})
	slices.Sort(want)

	var got []string
	pages := 0
	for after := ""; ; {
		keys, next, err := s.List(t.Context(), "page/", after, page)
		if err != nil {
			t.Fatalf("List page %d: %v", pages, err)
		}
		pages++
		got = append(got, keyNames(keys)...)
		if next == "" {
			break
		}
		if len(keys) != page || next != keys[len(keys)-1].Key {
			t.Fatalf("page %d: %d keys, next %q; want %d keys and next = last key", pages, len(keys), next, page)
		}
		if pages > n/page+1 {
			t.Fatal("List never ends")
		}
		after = next
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
	if !slices.Equal(got, want) {
		t.Errorf("paging returned %d keys, want %d, each once in byte order", len(got), len(want))
	}
}
