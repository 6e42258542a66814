// Package testutil holds the helpers the tests of several packages share: a
// goroutine-leak check for TestMain and a condition poller (this file), one parser
// of the Prometheus text format and scrapers built on it (metrics.go), client tokens
// (token.go), HTTP requests with JSON answers and free ports (http.go), and the real
// binary, built once per test process, with a starter that reads its banner
// (binary.go).
//
// It is imported only from _test.go files, never from production code: it may
// import longlink/auth and the standard library, nothing else.
//
// Concurrency: every helper may be called from any test goroutine; the built binary
// is shared by the whole test process and deleted by Run (Main calls it).
package testutil
