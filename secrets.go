package main

import (
	"errors"
	"fmt"
	"strings"
)

// isPlaceholder reports whether v is a stand-in from the shipped example files
// (deploy/kubernetes/secret.example.yaml: "REPLACE-ME-...", deploy/*/longlink.env.example:
// "replace-with-..."). Those values are public, so a node started with one has no
// secret at all; the check is on the pattern, not the exact strings, so a copy
// with a slightly edited placeholder is caught too.
func isPlaceholder(v string) bool {
	l := strings.ToLower(v)
	return strings.Contains(l, "replace-me") || strings.HasPrefix(l, "replace-with")
}

// checkSecrets refuses placeholder values for every secret flag, naming the flag and
// how to generate a real value. All problems are reported at once, so fixing an env
// file takes one restart.
func (o *serveOptions) checkSecrets() error {
	var errs []error
	refuse := func(flag, generate string) {
		errs = append(errs, fmt.Errorf("--%s (%s) is a placeholder from an example file, not a secret; generate one with: %s",
			flag, envName(flag), generate))
	}
	if isPlaceholder(string(o.cfg.TokenSecret)) {
		refuse("token-secret", "openssl rand -hex 32")
	}
	for _, k := range o.cfg.Push.APIKeys {
		if isPlaceholder(k) {
			refuse("api-key", "openssl rand -hex 24")
			break
		}
	}
	if isPlaceholder(o.cfg.Cluster.ClusterKey) {
		refuse("cluster-key", "longlink keygen (or openssl rand -base64 32)")
	}
	if isPlaceholder(string(o.cfg.ConnectHook.Secret)) {
		refuse("connect-hook-secret", "openssl rand -hex 32")
	}
	if isPlaceholder(string(o.cfg.Webhook.Secret)) {
		refuse("webhook-secret", "openssl rand -hex 32")
	}
	return errors.Join(errs...)
}
