package natsx

import (
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
)

// InboxPrefix is the prefix of the reply subjects of a connection made with identity's
// credentials; pkg/auth lets each identity subscribe to its own only.
func InboxPrefix(identity string) string { return "_INBOX_" + identity }

// CredsIdentity returns the identity (the user JWT's name) of a .creds file, without its secrets.
func CredsIdentity(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("NATS_CREDS: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return "", fmt.Errorf("NATS_CREDS %s: not a .creds file: %w", path, err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "", fmt.Errorf("NATS_CREDS %s: not a user's credentials: %w", path, err)
	}
	if claims.Name == "" {
		return "", fmt.Errorf("NATS_CREDS %s: the user JWT names no identity", path)
	}
	return claims.Name, nil
}
