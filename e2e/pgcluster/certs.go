package pgcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// tlsFiles are the PEM files written into <Dir>/tls.
type tlsFiles struct {
	caCert, caKey         string
	otherCACert           string
	serverCert, serverKey string
	proxyCert, proxyKey   string
}

// keyPair is a certificate with its private key.
type keyPair struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

// writeTLS generates the test PKI into dir:
//
//	ca.crt / ca.key          test CA
//	server.crt / server.key  PostgreSQL server cert (localhost, 127.0.0.1, ::1), signed by the CA
//	proxy.crt / proxy.key    ddlguard client-facing cert (same names), signed by the CA
//	other-ca.crt             an unrelated CA that signed nothing
//
// All keys are ECDSA P-256 and written with mode 0600; certificates 0644.
// Ownership of server.key is adjusted by the caller.
func writeTLS(dir string) (tlsFiles, error) {
	f := tlsFiles{
		caCert:      filepath.Join(dir, "ca.crt"),
		caKey:       filepath.Join(dir, "ca.key"),
		otherCACert: filepath.Join(dir, "other-ca.crt"),
		serverCert:  filepath.Join(dir, "server.crt"),
		serverKey:   filepath.Join(dir, "server.key"),
		proxyCert:   filepath.Join(dir, "proxy.crt"),
		proxyKey:    filepath.Join(dir, "proxy.key"),
	}

	ca, err := newCA("ddlguard test CA")
	if err != nil {
		return f, err
	}
	other, err := newCA("ddlguard other (untrusted) CA")
	if err != nil {
		return f, err
	}
	server, err := newLeaf(ca, "localhost")
	if err != nil {
		return f, err
	}
	proxy, err := newLeaf(ca, "localhost")
	if err != nil {
		return f, err
	}

	for _, w := range []struct {
		kp                *keyPair
		certPath, keyPath string
	}{
		{ca, f.caCert, f.caKey},
		{other, f.otherCACert, ""},
		{server, f.serverCert, f.serverKey},
		{proxy, f.proxyCert, f.proxyKey},
	} {
		if err := writePEM(w.certPath, "CERTIFICATE", w.kp.der, 0o644); err != nil {
			return f, err
		}
		if w.keyPath == "" {
			continue
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(w.kp.key)
		if err != nil {
			return f, fmt.Errorf("pgcluster: marshal key: %w", err)
		}
		if err := writePEM(w.keyPath, "PRIVATE KEY", keyDER, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(name string) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ddlguard tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: parse CA certificate: %w", err)
	}
	return &keyPair{cert: cert, der: der, key: key}, nil
}

// newLeaf issues a server certificate for localhost, 127.0.0.1 and ::1.
func newLeaf(ca *keyPair, commonName string) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"ddlguard tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: parse certificate: %w", err)
	}
	return &keyPair{cert: cert, der: der, key: key}, nil
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("pgcluster: write %s: %w", path, err)
	}
	// WriteFile's mode is filtered by the umask; make it exact.
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("pgcluster: chmod %s: %w", path, err)
	}
	return nil
}
