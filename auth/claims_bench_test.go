package auth

import (
	"encoding/json"
	"testing"
)

// BenchmarkClaimsDecode compares the fast UnmarshalJSON with encoding/json on the
// claims Mint produces, both entered through json.Unmarshal as golang-jwt does.
func BenchmarkClaimsDecode(b *testing.B) {
	data := []byte(`{"rooms":["lobby"],"sub":"42","exp":1700003600,"iat":1700000000}`)
	b.Run("path=fast", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var tc tokenClaims
			if err := json.Unmarshal(data, &tc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("path=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var tc plainClaims
			if err := json.Unmarshal(data, &tc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
