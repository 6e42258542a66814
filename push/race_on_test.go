//go:build race

package push

// raceEnabled skips allocation counts, which the race detector inflates.
const raceEnabled = true
