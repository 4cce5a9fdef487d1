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
//   - exits when it receives SIGINT/SIGTERM, or when its stdin closes (the parent died),
//     so that no orphan survives a crashed or killed parent.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	dir := flag.String("dir", "", "directory for the SQLite database files (required)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

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

	// The parent holds our stdin open; EOF means it is gone.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()

	fmt.Printf("READY %s\n", f.MongoDBURI())

	<-done
}
