// Package promhist provides Prometheus-compatible histograms on top of a
// VictoriaMetrics/metrics Set.
//
// VictoriaMetrics' own Histogram exports "vmrange" buckets, which Prometheus'
// histogram_quantile cannot read. A promhist.Histogram instead registers one
// counter per upper bound, name_bucket{...,le="<bound>"}, plus name_sum and
// name_count, so both Prometheus and VictoriaMetrics can compute quantiles.
//
// What it does not do: native (sparse) histograms, resetting, or unregistering.
//
// Concurrency: Observe and UpdateDuration may be called from any number of
// goroutines; they do a handful of atomic adds and one short mutex section
// (the FloatCounter behind name_sum) and never allocate. Buckets are
// incremented cumulatively at observation time, so a scrape that races an
// Observe may see a bucket, name_count and name_sum disagree by that one
// observation; the next scrape is consistent again.
package promhist
