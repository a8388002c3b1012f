package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	snapfmt "github.com/kvsctl/kvsctl/kvs/snapshot"
	"github.com/kvsctl/kvsctl/kvs/stores"
)

// The snapshot commands: save (from a server), inspect (a file), restore
// (into a store, offline).

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "back up the whole store, check a backup, restore it into a bolt or PostgreSQL store",
		Description: "A snapshot is every key of the store, with its value, version and lease, read at one\n" +
			"revision, in a store-independent format with a SHA-256 checksum (docs/api.md). Restore\n" +
			"keeps versions and the revision, so it also moves a store from bolt to PostgreSQL and\n" +
			"back (docs/operations.md).",
		Subcommands: []*cli.Command{snapshotSaveCommand(), snapshotInspectCommand(), snapshotRestoreCommand()},
	}
}

func snapshotSaveCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:      "save",
		Usage:     "save a snapshot of a running server's store to FILE",
		UsageText: "kvsctl snapshot save [--force] [--json] FILE",
		Description: "Streams GET /v1/snapshot (policy operation admin) into FILE (mode 0600: it holds every\n" +
			"value), with a progress line on stderr, and checks it as it arrives: FILE appears only\n" +
			"once the whole snapshot is in and its checksum matches. Refuses to replace FILE without\n" +
			"--force. --rate caps the transfer (MB/s), so that a backup of a busy server takes longer\n" +
			"rather than taking CPU from its requests.\n\n" +
			"Example:\n  kvsctl snapshot save backup.snap",
		Flags: clientFlags(jsonFlag(), &cli.BoolFlag{Name: "force", Usage: "replace FILE if it exists"},
			&cli.Float64Flag{Name: "rate", Usage: "receive at most `MB` megabytes a second (0: as fast as possible)"}),
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			file := a[0]
			if c.Float64("rate") < 0 {
				return usagef("--rate must not be negative")
			}
			if _, err := os.Lstat(file); err == nil && !c.Bool("force") {
				return fmt.Errorf("snapshot save: %s: %w", file, fs.ErrExist)
			}
			var info snapfmt.Info
			err = withClient(c, "snapshot save", func(cl *client.Client) error {
				var err error
				info, err = saveSnapshot(c, cl, file)
				return err
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, infoJSON(file, info, nil))
			}
			_, err = fmt.Fprintf(c.App.Writer, "saved %s: revision %d, %d keys, %d bytes, sha256 %s\n",
				file, info.Header.Revision, info.Count, info.Size, info.SHA256)
			return err
		},
	})
}

// saveSnapshot writes the server's snapshot to a temporary file beside
// file, verifying it as it arrives, and renames it to file.
func saveSnapshot(c *cli.Context, cl *client.Client, file string) (snapfmt.Info, error) {
	body, err := cl.Snapshot(c.Context)
	if err != nil {
		return snapfmt.Info{}, err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return snapfmt.Info{}, fmt.Errorf("create %s: %w", file, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return snapfmt.Info{}, err
	}
	var in io.Reader = body
	if rate := c.Float64("rate"); rate > 0 {
		in = &paced{r: body, rate: rate * 1e6, start: time.Now()}
	}
	r, err := snapfmt.NewReader(io.TeeReader(in, tmp))
	if err != nil {
		return snapfmt.Info{}, fmt.Errorf("receive snapshot: %w", err)
	}
	last := time.Now()
	progress := func(final bool) {
		if final || time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(c.App.ErrWriter, "snapshot: %d keys, %.1f MB\n", r.Count(), float64(r.Size())/1e6)
		}
	}
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return snapfmt.Info{}, fmt.Errorf("receive snapshot: %w", err)
		}
		if r.Count()%1024 == 0 {
			progress(false)
		}
	}
	progress(true)
	if err := tmp.Sync(); err != nil {
		return snapfmt.Info{}, fmt.Errorf("write %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return snapfmt.Info{}, fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return snapfmt.Info{}, fmt.Errorf("write %s: %w", file, err)
	}
	ok = true
	return snapfmt.Info{Header: r.Header(), Count: r.Count(), Size: r.Size(), SHA256: fmt.Sprintf("%x", r.Digest())}, nil
}

// paced reads at most rate bytes a second on average: TCP's flow control
// then slows the server's stream down to the same pace.
type paced struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > 64<<10 {
		b = b[:64<<10]
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if ahead := time.Duration(float64(p.n)/p.rate*float64(time.Second)) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

// snapshotInfo is the --json form of a snapshot's description.
type snapshotInfo struct {
	File     string    `json:"file"`
	Format   int       `json:"format"`
	Store    string    `json:"store"`
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
	Keys     int64     `json:"keys"`
	Size     int64     `json:"size"`
	Checksum string    `json:"checksum"` // "ok" or "corrupt"
	SHA256   string    `json:"sha256,omitempty"`
	Error    string    `json:"error,omitempty"`
}

func infoJSON(file string, info snapfmt.Info, err error) snapshotInfo {
	out := snapshotInfo{File: file, Format: snapfmt.Version, Store: info.Header.Store, Revision: info.Header.Revision,
		Time: info.Header.Time, Keys: info.Count, Size: info.Size, Checksum: "ok", SHA256: info.SHA256}
	if err != nil {
		out.Checksum, out.Error = "corrupt", err.Error()
	}
	return out
}

func snapshotInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "check a snapshot file and print its revision, key count, size and checksum",
		UsageText: "kvsctl snapshot inspect [--json] FILE",
		Description: "Reads the whole file and verifies its checksum and structure. Exits 1 when it is\n" +
			"truncated, altered or of an unknown format version.\n\n" +
			"Example:\n  kvsctl snapshot inspect backup.snap",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			f, err := os.Open(a[0])
			if err != nil {
				return fmt.Errorf("snapshot inspect: %w", err)
			}
			defer f.Close()
			info, ierr := snapfmt.Inspect(f)
			out := infoJSON(a[0], info, ierr)
			if c.Bool("json") {
				err = printJSON(c.App.Writer, out)
			} else {
				sum := "OK (sha256 " + out.SHA256 + ")"
				if ierr != nil {
					sum = "corrupt"
				}
				_, err = fmt.Fprintf(c.App.Writer, "file:      %s\nstore:     %s\nrevision:  %d\ntime:      %s\nkeys:      %d\nsize:      %d bytes\nchecksum:  %s\n",
					out.File, out.Store, out.Revision, out.Time.Format(time.RFC3339), out.Keys, out.Size, sum)
			}
			if err != nil {
				return err
			}
			if ierr != nil {
				return fmt.Errorf("snapshot %s: %w", a[0], ierr)
			}
			return nil
		},
	}
}

func snapshotRestoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a snapshot file into an empty store, offline",
		UsageText: "kvsctl snapshot restore FILE --store URL [--force] [--json]",
		Description: "Writes every key of FILE into the store at URL (bolt:PATH or postgres://...) with its\n" +
			"version, and sets the store's revision to the snapshot's, so versions that clients hold\n" +
			"stay valid. Stop the servers of that store first. The target must be empty, or --force\n" +
			"replaces its keys. The file is verified to its end before anything is committed: a\n" +
			"truncated or altered snapshot leaves the target as it was.\n\n" +
			"Example (migrate from bolt to PostgreSQL):\n" +
			"  kvsctl snapshot save backup.snap\n" +
			"  kvsctl snapshot restore backup.snap --store postgres://kvs@db.example.com/kvs",
		Flags: []cli.Flag{
			jsonFlag(),
			&cli.StringFlag{Name: "store", EnvVars: env("store"), Usage: "the target store's `URL`: bolt:PATH or postgres://..."},
			&cli.BoolFlag{Name: "force", Usage: "replace the keys of a store that has some"},
		},
		Action: func(c *cli.Context) error {
			a, err := args(c, 1, 1)
			if err != nil {
				return err
			}
			url := c.String("store")
			if url == "" {
				return usagef("give the target store with --store URL (bolt:PATH or postgres://...)")
			}
			if stores.Kind(url) == "" {
				return usagef("--store: want bolt:PATH or postgres://...")
			}
			f, err := os.Open(a[0])
			if err != nil {
				return fmt.Errorf("snapshot restore: %w", err)
			}
			defer f.Close()
			r, err := snapfmt.NewReader(f)
			if err != nil {
				return fmt.Errorf("snapshot restore %s: %w", a[0], err)
			}
			last := time.Now()
			n, err := stores.Restore(c.Context, url, r, stores.RestoreOptions{
				Force: c.Bool("force"),
				Progress: func(keys int64) {
					if time.Since(last) >= time.Second {
						last = time.Now()
						fmt.Fprintf(c.App.ErrWriter, "restore: %d keys\n", keys)
					}
				},
			})
			if err != nil {
				if errors.Is(err, kvs.ErrNotEmpty) {
					return hintError{fmt.Errorf("snapshot restore: %w", err), "restore into an empty store, or replace its keys with --force"}
				}
				return fmt.Errorf("snapshot restore %s: %w", a[0], err)
			}
			h := r.Header()
			if c.Bool("json") {
				return printJSON(c.App.Writer, struct {
					Store    string `json:"store"`
					Keys     int64  `json:"keys"`
					Revision int64  `json:"revision"`
				}{kvs.RedactURL(url), n, h.Revision})
			}
			_, err = fmt.Fprintf(c.App.Writer, "restored %d keys at revision %d into %s\n", n, h.Revision, kvs.RedactURL(url))
			return err
		},
	}
}
