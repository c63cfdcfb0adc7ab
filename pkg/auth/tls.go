package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The files InitTLS writes, relative to its directory: the CA's certificate (public), the NATS
// server's certificate and key, the services' client certificate and key, and the operator's
// (the CLI's) client certificate and key. The CA's key goes to TLSCAKey.
const (
	TLSCA         = "ca.pem"
	TLSServerCert = "nats.pem"
	TLSServerKey  = "nats-key.pem"
	TLSClientCert = "client.pem"
	TLSClientKey  = "client-key.pem"
	TLSCLICert    = "operator.pem"
	TLSCLIKey     = "operator-key.pem"
	TLSCAKey      = "keys/ca-key.pem"
)

// DefaultTLSHosts are the names InitTLS's server certificate is for by default: the NATS
// service of docker-compose.yml, and this host for the CLI through the published port.
var DefaultTLSHosts = []string{"nats", "localhost", "127.0.0.1"}

// TLSValidity is how long InitTLS's certificates are valid; rotate before (docs/security.md).
const TLSValidity = 365 * 24 * time.Hour

// InitTLS writes into dir (created if needed; it must not hold a previous InitTLS's files) the
// certificates of NATS with mutual TLS: a CA of its own (ECDSA P-256), a server certificate
// for hosts (DNS names or IP addresses; also valid as a client certificate, as the routes of a
// cluster need), a client certificate for the services and one for the operator's CLI, all
// signed by the CA and valid TLSValidity. Certificates are written 0644, keys 0600; the CA's
// key goes to TLSCAKey: keep it offline. It returns the files written, relative to dir.
func InitTLS(dir string, hosts []string) ([]string, error) {
	if len(hosts) == 0 {
		return nil, errors.New("auth tls: no host names for the server certificate")
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return nil, fmt.Errorf("auth tls: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, TLSCA)); err == nil {
		return nil, fmt.Errorf("auth tls: %s already holds certificates (%s): rotate into a new directory", dir, TLSCA)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth tls: %w", err)
	}
	var written []string
	write := func(name, kind string, der []byte, mode os.FileMode) error {
		data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			return fmt.Errorf("auth tls: %w", err)
		}
		written = append(written, name)
		return nil
	}
	now := time.Now()
	serial := func() (*big.Int, error) {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, fmt.Errorf("auth tls: serial number: %w", err)
		}
		return n, nil
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth tls: CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "marketpipe NATS CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(TLSValidity), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("auth tls: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("auth tls: CA certificate: %w", err)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, fmt.Errorf("auth tls: CA key: %w", err)
	}
	if err := write(TLSCA, "CERTIFICATE", caDER, 0o644); err != nil {
		return nil, err
	}
	if err := write(TLSCAKey, "EC PRIVATE KEY", caKeyDER, 0o600); err != nil {
		return nil, err
	}
	leaf := func(cn, certFile, keyFile string, usage []x509.ExtKeyUsage, hosts []string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("auth tls: %s key: %w", cn, err)
		}
		sn, err := serial()
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(TLSValidity),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("auth tls: %s certificate: %w", cn, err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return fmt.Errorf("auth tls: %s key: %w", cn, err)
		}
		if err := write(certFile, "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return write(keyFile, "EC PRIVATE KEY", keyDER, 0o600)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if err := leaf("marketpipe NATS server", TLSServerCert, TLSServerKey, both, hosts); err != nil {
		return nil, err
	}
	if err := leaf("marketpipe services", TLSClientCert, TLSClientKey, client, nil); err != nil {
		return nil, err
	}
	if err := leaf("marketpipe operator", TLSCLICert, TLSCLIKey, client, nil); err != nil {
		return nil, err
	}
	return written, nil
}
