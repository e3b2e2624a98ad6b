package oidctest

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// hookPath is where the token hook server answers.
const hookPath = "/token-hook"

// maxHookRequest bounds what the hook reads from Hydra.
const maxHookRequest = 1 << 20

// tokenHook is the HTTP server Hydra calls before it issues a token (see
// the package documentation, "Groups").
type tokenHook struct {
	ln  net.Listener
	srv *http.Server
	key string // the Authorization header value Hydra sends

	mu     sync.Mutex
	groups map[string][]string // client id → groups
}

func startTokenHook(key string) (*tokenHook, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the token hook: %w", err)
	}
	h := &tokenHook{ln: ln, key: key, groups: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+hookPath, h.serve)
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

// url is the hook's address for Hydra's configuration.
func (h *tokenHook) url() string { return "http://" + h.ln.Addr().String() + hookPath }

func (h *tokenHook) setGroups(clientID string, groups []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(groups) == 0 {
		delete(h.groups, clientID)
		return
	}
	h.groups[clientID] = slices.Clone(groups)
}

// serve answers Hydra's token hook request: 200 with the client's groups
// as an access token claim, or 204 (issue the token unchanged) for a
// client without groups.
func (h *tokenHook) serve(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(h.key)) != 1 {
		http.Error(w, "wrong hook key", http.StatusUnauthorized)
		return
	}
	var req struct {
		Request struct {
			ClientID string `json:"client_id"`
		} `json:"request"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxHookRequest)).Decode(&req); err != nil {
		http.Error(w, "bad hook request: "+err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	groups := slices.Clone(h.groups[req.Request.ClientID])
	h.mu.Unlock()
	if len(groups) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var resp struct {
		Session struct {
			AccessToken map[string]any `json:"access_token"`
		} `json:"session"`
	}
	resp.Session.AccessToken = map[string]any{"groups": groups}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (h *tokenHook) close() error {
	if err := h.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stopping the token hook: %w", err)
	}
	return nil
}
