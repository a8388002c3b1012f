package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
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

// safeText escapes, in place and Go style, every control or bidirectional
// formatting character of a message but the line break (an invalid UTF-8
// byte becomes \xNN): for prose that may quote a certificate's text, such
// as an error or a check's detail, where safe would quote the whole
// sentence.
func safeText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != '\n' && unsafeRune(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r != '\n' && unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// safeError is an error whose message went through safeText; errors.Is
// and errors.As still see the error it wraps, so hints and exit codes are
// unchanged.
type safeError struct{ err error }

func (e safeError) Error() string { return safeText(e.err.Error()) }
func (e safeError) Unwrap() error { return e.err }

// safeErrors makes the actions of cmds and of their subcommands return
// errors whose messages are safe to print: a library error may quote the
// subject or a SAN of the certificate it is about, and main prints it as
// it is.
func safeErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		if action := c.Action; action != nil {
			c.Action = func(ctx *cli.Context) error {
				err := action(ctx)
				if err == nil || safeText(err.Error()) == err.Error() {
					return err
				}
				return safeError{err}
			}
		}
		safeErrors(c.Subcommands)
	}
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
