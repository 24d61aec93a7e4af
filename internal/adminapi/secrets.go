package adminapi

import (
	"context"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/secrets"
)

// SecretLister lists the stored secrets by name and user, never a value
// (implemented by *secrets.Store; SecretListerFunc adapts a backend's
// ListSecrets).
type SecretLister interface {
	List(ctx context.Context) ([]secrets.Info, error)
}

var _ SecretLister = (*secrets.Store)(nil)

// SecretListerFunc adapts a function, such as a secrets.Backend's
// ListSecrets, to a SecretLister.
type SecretListerFunc func(ctx context.Context) ([]secrets.Info, error)

// List calls f.
func (f SecretListerFunc) List(ctx context.Context) ([]secrets.Info, error) { return f(ctx) }

// SecretView is one stored secret as GET /admin/v1/secrets shows it: its
// name, the user it is stored for ("" for the shared value) and when it
// was last set. There is no field for the value, so none can leak.
type SecretView struct {
	Name      string    `json:"name"`
	User      string    `json:"user"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SecretsView is the answer of GET /admin/v1/secrets, ordered as the
// store lists them (by name, then user; never null).
type SecretsView struct {
	Secrets []SecretView `json:"secrets"`
}

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	if a.d.Secrets == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "the secrets store is not available")
		return nil
	}
	infos, err := a.d.Secrets.List(r.Context())
	if err != nil {
		return err
	}
	out := SecretsView{Secrets: make([]SecretView, 0, len(infos))}
	for _, i := range infos {
		out.Secrets = append(out.Secrets, SecretView{Name: i.Name, User: i.User, UpdatedAt: i.UpdatedAt})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
