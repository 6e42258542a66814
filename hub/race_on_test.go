//go:build race

package hub

// raceEnabled skips allocation counts, which the race detector inflates.
const raceEnabled = true
