package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/store"
)

// AdminUser is the user created on first start.
const AdminUser = "admin"

// EnsureAdminKey creates, on first start (no "admin" user yet), the admin
// user and an admin API key, writes the key to <data-dir>/admin.key (0600)
// and returns it so the caller can print it once. Later starts return
// created=false and never re-create or re-print a key.
func (a *App) EnsureAdminKey(ctx context.Context) (key, path string, created bool, err error) {
	path = filepath.Join(a.Config.DataDir, datadir.AdminKeyFile)
	if _, err := a.Store.UserByName(ctx, AdminUser); err == nil {
		return "", path, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", path, false, err
	}
	plain, id, prefix, hash := a.Authn.NewKey()
	if err := datadir.WritePrivate(path, []byte(plain+"\n")); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", path, false, fmt.Errorf("%s exists but no admin user does; move it away to bootstrap a new admin key", path)
		}
		return "", path, false, err
	}
	u, _, err := a.Store.EnsureUser(ctx, AdminUser, []string{"admin"})
	if err == nil {
		err = a.Store.CreateAPIKey(ctx, store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash,
			Prefix: prefix, Roles: []string{"admin"}, CreatedAt: time.Now().UTC()})
	}
	if err != nil {
		_ = os.Remove(path)
		return "", path, false, err
	}
	for _, e := range []*audit.Event{
		{Type: audit.AdminUserCreate, Principal: "system", Status: audit.StatusOK, Detail: "bootstrap: user admin roles [admin]"},
		{Type: audit.AdminKeyCreate, Principal: "system", Status: audit.StatusOK, Detail: "bootstrap: key " + id + " for user admin role admin"},
	} {
		if err := a.Audit.Emit(ctx, e); err != nil {
			return "", path, false, err
		}
	}
	return plain, path, true, nil
}
