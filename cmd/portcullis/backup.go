package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

const keysNotice = `The backup holds the database only. The keys stay in the data dir and are
needed to restore and verify it: keep server.secret, audit.key,
audit-chain.key, audit-signing.key and secrets.key (without it the stored
upstream credentials cannot be decrypted) in your secret store.`

func newBackupCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Take an online, consistent backup of the store and verify it",
		Long: `Backup copies the whole database in --data-dir into FILE (created 0600;
it must not exist) as one consistent snapshot (SQLite VACUUM INTO), while
the gateway keeps serving: it needs no lock and does not block writers.
The copy is then checked (SQLite integrity check and the audit hash chain)
before the command reports success.

` + keysNotice,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			if err := sqliteOnly(cfg); err != nil {
				return err
			}
			dst, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if _, err := os.Lstat(dst); err == nil {
				return fmt.Errorf("%s exists; refusing to overwrite it", dst)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			db, err := sqlite.OpenReadOnly(cmd.Context(), filepath.Join(cfg.DataDir, datadir.DatabaseFile), sqlite.Options{Logger: log})
			if err != nil {
				return err
			}
			defer db.Close()
			tmp := dst + ".partial"
			start := time.Now()
			fmt.Fprintf(cmd.ErrOrStderr(), "copying %s ...\n", filepath.Join(cfg.DataDir, datadir.DatabaseFile))
			if err := db.Backup(cmd.Context(), tmp); err != nil {
				os.Remove(tmp)
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "verifying the copy ...")
			rep, err := app.VerifyAudit(cmd.Context(), cfg, app.VerifyOptions{Database: tmp, SnapshotOnly: true}, log)
			if err != nil {
				os.Remove(tmp)
				return fmt.Errorf("backup copy does not verify: %w", err)
			}
			if !rep.OK() {
				os.Remove(tmp)
				return fmt.Errorf("backup copy: audit chain broken at seq %d: %s (the live database is damaged: run `portcullis audit verify`)",
					rep.BadSeq, rep.Problem)
			}
			if err := os.Rename(tmp, dst); err != nil {
				os.Remove(tmp)
				return err
			}
			fi, _ := os.Stat(dst)
			fmt.Fprintf(cmd.OutOrStdout(), "backup written: %s (%d bytes, %d audit records verified, seq %d..%d, %s)\n%s\n",
				dst, fi.Size(), rep.Records, rep.FirstSeq, rep.LastSeq, time.Since(start).Round(time.Millisecond), keysNotice)
			return nil
		},
	}
}

func newRestoreCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the store with a backup after verifying it (server must be stopped)",
		Long: `Restore checks FILE (SQLite integrity check and the audit hash chain, with
the keys of --data-dir) and only then replaces the database in --data-dir.
The current database is kept beside it as portcullis.db.pre-restore-<time>
(with its -wal file), and the data dir's audit-checkpoint.json, which
describes the replaced log, is moved aside the same way. The gateway must
be stopped: restore takes the data dir lock that a running server holds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			if err := sqliteOnly(cfg); err != nil {
				return err
			}
			src, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if err := datadir.Ensure(cfg.DataDir); err != nil {
				return err
			}
			lock, err := datadir.Lock(cfg.DataDir)
			if err != nil {
				return fmt.Errorf("%w; stop the gateway before restoring", err)
			}
			defer lock.Close()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			fmt.Fprintf(cmd.ErrOrStderr(), "verifying %s ...\n", src)
			rep, err := app.VerifyAudit(cmd.Context(), cfg, app.VerifyOptions{Database: src, SnapshotOnly: true}, log)
			if err != nil {
				return fmt.Errorf("refusing to restore: %w", err)
			}
			if !rep.OK() {
				fmt.Fprintf(cmd.ErrOrStderr(), "refusing to restore: audit chain broken at seq %d: %s\n", rep.BadSeq, rep.Problem)
				return exitError{code: 1}
			}
			live := filepath.Join(cfg.DataDir, datadir.DatabaseFile)
			tmp := live + ".restore-tmp"
			os.Remove(tmp)
			if err := copyPrivate(src, tmp); err != nil {
				return err
			}
			stamp := time.Now().UTC().Format("20060102T150405Z")
			var kept []string
			for _, name := range []string{datadir.DatabaseFile, datadir.DatabaseFile + "-wal", datadir.AuditCheckpointFile} {
				p := filepath.Join(cfg.DataDir, name)
				if _, err := os.Lstat(p); err != nil {
					continue
				}
				aside := p + ".pre-restore-" + stamp
				if name == datadir.AuditCheckpointFile {
					aside = filepath.Join(cfg.DataDir, "audit-checkpoint.pre-restore-"+stamp+".json")
				}
				if err := os.Rename(p, aside); err != nil {
					os.Remove(tmp)
					return err
				}
				kept = append(kept, aside)
			}
			os.Remove(live + "-shm")
			if err := os.Rename(tmp, live); err != nil {
				return err
			}
			if err := syncDir(cfg.DataDir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s (%d audit records verified, seq %d..%d)\n",
				src, live, rep.Records, rep.FirstSeq, rep.LastSeq)
			for _, k := range kept {
				fmt.Fprintf(cmd.OutOrStdout(), "kept the previous file as %s\n", k)
			}
			return nil
		},
	}
}

// copyPrivate copies src to a new file dst (0600), fsynced.
func copyPrivate(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// sqliteOnly refuses backup and restore on PostgreSQL, whose backups are
// the database's own tools' job.
func sqliteOnly(cfg *config.Config) error {
	if cfg.Storage.Driver == config.DriverPostgres {
		return errors.New("storage.driver is postgres: back up and restore the database with pg_dump / pg_restore " +
			"(or your provider's snapshots), and keep the data dir's key files with it")
	}
	return nil
}
