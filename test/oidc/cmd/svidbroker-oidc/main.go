// Command svidbroker-oidc runs the test and demo OpenID provider of package oidcprovider over HTTPS
// on a loopback address, with users and clients from a JSON file. The test stack and `make demo`
// start it; a real deployment uses the organization's own identity provider instead.
//
//	svidbroker-oidc --listen 127.0.0.1:8444 --cert server.crt --key server.key --config users.json
//
// It stops on SIGTERM or SIGINT, draining requests in flight for up to 5 seconds.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	oidcprovider "github.com/svidbroker/svidbroker/test/oidc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "svidbroker-oidc:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8444", "loopback host:port to serve HTTPS on")
	certFile := flag.String("cert", "", "PEM server certificate (for the listen address)")
	keyFile := flag.String("key", "", "PEM private key of --cert")
	configFile := flag.String("config", "", "JSON file of users and clients (see package oidcprovider)")
	issuer := flag.String("issuer", "", "issuer URL; default https://<listen>")
	flag.Parse()
	if *certFile == "" || *keyFile == "" || *configFile == "" {
		return errors.New("--cert, --key and --config are required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: this provider is for tests and demos and listens on loopback only", *listen)
	}
	if *issuer == "" {
		*issuer = "https://" + *listen
	}
	cfg, err := oidcprovider.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("load --cert and --key: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// The OP library logs through the default logger.
	slog.SetDefault(log)
	p, err := oidcprovider.New(cfg, *issuer, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := p.HTTPServer()
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	log.Info("serving", "issuer", *issuer, "users", len(cfg.Users), "clients", len(cfg.Clients))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-done:
		return err
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
