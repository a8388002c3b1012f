package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// The one output layer: every command prints text for people, or with
// --json one JSON document indented by two spaces (printJSON), or a JSON
// array written as it goes (jsonArray), indented the same way.

// printJSON writes v as one JSON document, indented by two spaces.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// jsonArray writes a JSON array element by element, so a listing of any
// length uses constant memory; the bytes are those printJSON would write
// for the whole array.
type jsonArray struct {
	w     io.Writer
	count int
}

func (a *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	sep := ",\n  "
	if a.count == 0 {
		sep = "[\n  "
	}
	a.count++
	_, err = fmt.Fprintf(a.w, "%s%s", sep, b)
	return err
}

func (a *jsonArray) close() error {
	end := "\n]\n"
	if a.count == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(a.w, end)
	return err
}

// safe quotes s, Go style, when it holds a control or bidirectional
// formatting character (an escape sequence, a carriage return, U+202E), so
// that text from a certificate, a CSR or a key cannot rewrite the terminal
// it is printed on. JSON output is never quoted: it is exact.
func safe(s string) string {
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	return strconv.Quote(s)
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == unicode.ReplacementChar
}

// isTerminal reports whether w is a terminal, to redraw a progress line in
// place rather than print one line per update.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
