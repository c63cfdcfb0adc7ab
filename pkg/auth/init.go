package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Account names in the generated configuration.
const (
	AccountName = "MARKETPIPE"
	SystemName  = "SYS"
	// ServerInclude is the file of Init's directory a nats-server configuration includes.
	ServerInclude = "nats-auth.conf"
)

// MaxControlLine is the max_control_line ServerInclude sets: a client sends its user JWT in its
// CONNECT line, and the JWTs of identities that read streams (their permissions deny the
// durable consumers of others) exceed nats-server's default of 4 KiB.
const MaxControlLine = 16 << 10

// CredsFile is the name of identity's credentials in Init's directory.
func CredsFile(identity string) string { return identity + ".creds" }

// Init writes into dir (created; it must not hold a previous Init's files) what a deployment
// needs for NATS's decentralised auth: an operator, a system account, the pipeline's account
// with JetStream, one user per identity with the permissions Permissions derives, each as a
// .creds file (mode 0600), and ServerInclude, a nats-server configuration include with the
// operator, the system account and a memory resolver preloaded with both accounts. The
// operator's and the account's seeds go to dir/keys (mode 0600): keep them offline.
// It returns the files written, relative to dir.
func Init(dir string, ids []Identity) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return nil, fmt.Errorf("auth init: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ServerInclude)); err == nil {
		return nil, fmt.Errorf("auth init: %s already holds credentials (%s): rotate into a new directory", dir, ServerInclude)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth init: %w", err)
	}
	var written []string
	write := func(name string, data []byte) error {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("auth init: %w", err)
		}
		written = append(written, name)
		return nil
	}
	opKP, err := nkeys.CreateOperator()
	if err != nil {
		return nil, fmt.Errorf("auth init: operator key: %w", err)
	}
	opPub, _ := opKP.PublicKey()
	sysKP, sysJWT, err := account(opKP, SystemName, false)
	if err != nil {
		return nil, err
	}
	sysPub, _ := sysKP.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "marketpipe"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(opKP)
	if err != nil {
		return nil, fmt.Errorf("auth init: operator JWT: %w", err)
	}
	accKP, accJWT, err := account(opKP, AccountName, true)
	if err != nil {
		return nil, err
	}
	accPub, _ := accKP.PublicKey()
	for _, id := range ids {
		creds, err := user(accKP, id, Permissions(id, ids))
		if err != nil {
			return nil, err
		}
		if err := write(CredsFile(id.Name), creds); err != nil {
			return nil, err
		}
	}
	for name, kp := range map[string]nkeys.KeyPair{"keys/operator.nk": opKP, "keys/" + AccountName + ".nk": accKP, "keys/" + SystemName + ".nk": sysKP} {
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("auth init: %w", err)
		}
		if err := write(name, seed); err != nil {
			return nil, err
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "# marketpipe: written by `marketpipe auth init`; include it in nats-server's configuration.\n")
	fmt.Fprintf(&conf, "# Accounts: %s (the pipeline's, %s) and %s (the system account, %s).\n", AccountName, accPub, SystemName, sysPub)
	fmt.Fprintf(&conf, "# Clients send their user JWT in the CONNECT line: room for the longest.\nmax_control_line: %d\n", MaxControlLine)
	fmt.Fprintf(&conf, "operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		opJWT, sysPub, sysPub, sysJWT, accPub, accJWT)
	if err := write(ServerInclude, []byte(conf.String())); err != nil {
		return nil, err
	}
	return written, nil
}

// account makes an account signed by the operator; withJS enables JetStream without limits of
// its own (the server's max_file_store and the streams' MaxBytes bound it).
func account(op nkeys.KeyPair, name string, withJS bool) (nkeys.KeyPair, string, error) {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return nil, "", fmt.Errorf("auth init: account %s key: %w", name, err)
	}
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if withJS {
		ac.Limits.JetStreamLimits.DiskStorage = -1
		ac.Limits.JetStreamLimits.MemoryStorage = -1
	}
	token, err := ac.Encode(op)
	if err != nil {
		return nil, "", fmt.Errorf("auth init: account %s JWT: %w", name, err)
	}
	return kp, token, nil
}

// user makes the credentials of identity id in the account, with perms.
func user(acc nkeys.KeyPair, id Identity, perms jwt.Permissions) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("auth init: user %s key: %w", id.Name, err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = id.Name
	uc.Permissions = perms
	token, err := uc.Encode(acc)
	if err != nil {
		return nil, fmt.Errorf("auth init: user %s JWT: %w", id.Name, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("auth init: user %s: %w", id.Name, err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, fmt.Errorf("auth init: user %s creds: %w", id.Name, err)
	}
	return creds, nil
}
