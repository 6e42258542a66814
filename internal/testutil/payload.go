package testutil

import (
	"fmt"
	"math/rand/v2"
)

// JSON2K is a 2 KB JSON document like a pushed update: an array of small objects,
// the same keys with varying values, the same bytes every call. It is the payload of
// docs/performance.md's compression figures, shared by the loop, wsproto and root
// deflate tests so that they measure one document.
func JSON2K() []byte {
	rng := rand.New(rand.NewPCG(7, 7))
	b := []byte(`{"type":"scores","items":[`)
	for i := 0; len(b) < 2000; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":%d,"user":"user-%04d","score":%d,"delta":%.2f,"online":%v}`,
			i, rng.IntN(10000), rng.IntN(100000), rng.Float64()*10, rng.IntN(2) == 0)
	}
	return append(b, "]}"...)
}
