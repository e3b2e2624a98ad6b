package adminauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientToken(t *testing.T) {
	tests := []struct {
		name    string
		file    string // content; "" for no --token-file
		mode    os.FileMode
		env     string
		want    string
		wantErr error
		errSays []string
	}{
		{name: "file", file: aliceToken + "\n", mode: 0o600, want: aliceToken},
		{name: "file with spaces around", file: "  " + aliceToken + "\r\n\n", mode: 0o400, want: aliceToken},
		{name: "group-readable file", file: aliceToken, mode: 0o640, want: aliceToken},
		{name: "file wins over the environment", file: aliceToken, mode: 0o600, env: bobToken, want: aliceToken},
		{name: "environment", env: " " + bobToken + "\n", want: bobToken},
		{name: "world-readable file", file: aliceToken, mode: 0o604, env: bobToken, wantErr: ErrInsecureFile, errSays: []string{"mode 0604", "chmod 600"}},
		{name: "world-writable file", file: aliceToken, mode: 0o602, wantErr: ErrInsecureFile},
		{name: "empty file", file: "\n", mode: 0o600, env: bobToken, wantErr: ErrNoCredentials, errSays: []string{"is empty"}},
		{name: "two lines", file: aliceToken + "\n" + bobToken + "\n", mode: 0o600, wantErr: ErrInvalidCredentials, errSays: []string{"several lines"}},
		{name: "neither", wantErr: ErrNoCredentials, errSays: []string{"--token-file", "INTERLOCK_TOKEN"}},
		{name: "blank environment", env: "  ", wantErr: ErrNoCredentials, errSays: []string{"--token-file", "INTERLOCK_TOKEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(TokenEnv, tt.env)
			path := ""
			if tt.file != "" {
				path = filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ClientToken(path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ClientToken = %q, %v; want %v", got, err, tt.wantErr)
				}
				for _, s := range tt.errSays {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if strings.Contains(err.Error(), aliceToken) || strings.Contains(err.Error(), bobToken) {
					t.Errorf("error %q repeats the token", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ClientToken = %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		t.Setenv(TokenEnv, bobToken)
		path := filepath.Join(t.TempDir(), "nope")
		if _, err := ClientToken(path); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("ClientToken(missing file) = %v", err)
		}
	})
}
