// Command ferretdb-embedded runs FerretDB v1 with its SQLite backend for Downstream's
// development and test database.
//
// It embeds FerretDB's public `ferretdb` package instead of building `cmd/ferretdb`:
// the command's version check panics when built outside FerretDB's own repository
// (build/version/version.txt is empty in the module zip), while the embeddable package
// skips that check and locks telemetry off.
//
// Protocol with the parent process (server/db/embedded.ts):
//   - listens on the given loopback address (port 0 picks a free port);
//   - prints exactly one line `READY mongodb://127.0.0.1:PORT/` on stdout when listening;
//   - exits when it receives SIGINT/SIGTERM, and at once when its stdin closes (the parent
//     died), so that no orphan survives a crashed or killed parent;
//   - creates files and directories for the owner only (umask 077).
//
// It also adds the `_id` index FerretDB's own queries can use (see indexIDPaths).
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // the driver FerretDB itself uses
)

func main() {
	dir := flag.String("dir", "", "directory for the SQLite database files (required)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	// The SQLite files hold contacts, messages and password hashes: owner-only, whatever
	// umask the parent had (directories 0700, files 0600).
	syscall.Umask(0o077)

	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: -dir is required")
		os.Exit(2)
	}

	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: bad -dir: %s\n", err)
		os.Exit(2)
	}

	if err = os.MkdirAll(abs, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: cannot create %s: %s\n", abs, err)
		os.Exit(1)
	}

	var level slog.Level
	if err = level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: bad -log-level: %s\n", err)
		os.Exit(2)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Before READY, so that existing tables are searched by index from the first request.
	indexIDPaths(abs, logger)

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: %s\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The parent holds our stdin open; EOF means it is gone. Exit at once rather than give
	// connected clients FerretDB's few seconds of grace: another Downstream process on this
	// data directory is about to start the engine again on our port, and two engines must
	// never serve the same files (writes are serialised per process). SQLite's journal makes
	// an abrupt exit as safe as a crash.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()

	fmt.Printf("READY %s\n", f.MongoDBURI())

	// Collections created while running (a fresh database) get the index too.
	go func() {
		ticker := time.NewTicker(30 * time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				indexIDPaths(abs, logger)
			}
		}
	}()

	<-done
}

// indexIDPaths works around a mismatch in FerretDB v1.24's SQLite backend: it creates the
// unique `_id` index on `_ferretdb_sjson->"_id"`, but filters `_id` lookups (find, update,
// delete, findAndModify) on `_ferretdb_sjson->'$._id'`, an expression SQLite does not match
// to that index. Every `_id` lookup therefore scanned its table (0.4 s per updateOne on
// 60,000 documents, linear in the collection). An index on the very expression the queries
// use turns them into index searches. FerretDB never lists SQLite's own schema, so the extra
// index is invisible to it and is dropped with its table.
func indexIDPaths(dir string, logger *slog.Logger) {
	files, err := filepath.Glob(filepath.Join(dir, "*.sqlite"))
	if err != nil {
		return
	}

	for _, file := range files {
		if err := indexIDPathsIn(file); err != nil {
			logger.Warn("could not add _id path indexes", slog.String("file", file), slog.String("error", err.Error()))
		}
	}
}

func indexIDPathsIn(file string) error {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	if err != nil {
		return err
	}
	defer db.Close()

	rows, err := db.Query(`SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return nil // no collections yet
	}

	var tables []string
	for rows.Next() {
		var table string
		if err = rows.Scan(&table); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, table)
	}
	rows.Close()

	for _, table := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, table+"__id_path", table)
		if _, err = db.Exec(q); err != nil {
			return err
		}
	}

	return nil
}
